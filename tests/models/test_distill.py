"""Distillation on a tiny synthetic set built from real texts, with the real SPLADE-tiny encoder."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer

from core import schema
from core.errors import DiscoError
from core.io import sha256_path
from models.distill import DistillConfig, train_student
from models.conversation import format_conversation
from models.examples import Source, build_examples, epoch_batches, sampling, window_for
from models.losses import kl_distillation
from models.splade import SpladeEncoder
from models.weights import resolve

# (question, answer, human rewrite, positive passage), per conversation
CONVERSATIONS = [
    [
        ("who designed the eiffel tower?", "Gustave Eiffel's company.", "who designed the eiffel tower?",
         "The Eiffel Tower was designed by the engineering company of Gustave Eiffel."),
        ("when was it finished?", "In 1889.", "when was the eiffel tower finished?",
         "Construction of the Eiffel Tower was finished in March 1889 for the World's Fair."),
        ("how tall is it?", "330 metres.", "how tall is the eiffel tower?",
         "The Eiffel Tower is 330 metres tall, about the height of an 81-storey building."),
    ],
    [
        ("what is photosynthesis?", "How plants make food from light.", "what is photosynthesis?",
         "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make sugar."),
        ("where does it happen?", "In the chloroplasts.", "where does photosynthesis happen in plant cells?",
         "In plant cells photosynthesis takes place inside chloroplasts, which contain chlorophyll."),
        ("what gas does it release?", "Oxygen.", "what gas does photosynthesis release?",
         "Photosynthesis releases oxygen into the atmosphere as a by-product of splitting water."),
    ],
    [
        ("who were the beatles?", "An English rock band.", "who were the beatles?",
         "The Beatles were an English rock band formed in Liverpool in 1960."),
        ("who was their drummer?", "Ringo Starr.", "who was the drummer of the beatles?",
         "Ringo Starr replaced Pete Best as the drummer of the Beatles in 1962."),
        ("when did they break up?", "In 1970.", "when did the beatles break up?",
         "The Beatles broke up in 1970 after Paul McCartney announced his departure."),
    ],
    [
        ("who created python?", "Guido van Rossum.", "who created the python programming language?",
         "Python is a programming language created by Guido van Rossum and first released in 1991."),
        ("why is it called that?", "After Monty Python.", "why is the python language called python?",
         "The Python language is named after the comedy group Monty Python, not the snake."),
        ("what is its package index?", "PyPI.", "what is the python package index?",
         "The Python Package Index, PyPI, is the official repository of software for the Python language."),
    ],
]
DISTRACTORS = [
    "The Louvre in Paris is the world's most visited art museum.",
    'Notre-Dame cathedral was damaged by fire in 2019.',
    'The Statue of Liberty was a gift from France to the United States.',
    'Big Ben is the nickname of the bell in London.',
    'Chlorophyll absorbs red and blue light and reflects green light.',
    'Animals breathe in oxygen and exhale carbon dioxide.',
    'Mitochondria produce energy for the cell through respiration.',
    'Roots absorb water and minerals from the soil.',
    'The Rolling Stones are an English rock band formed in London in 1962.',
    'Elvis Presley is known as the King of Rock and Roll.',
    'Abbey Road studios are located in London.',
    'Liverpool is a city in the north west of England.',
    'Java is a programming language developed at Sun Microsystems.',
    'Pythons are large non-venomous snakes found in Africa and Asia.',
    "Monty Python's Flying Circus was a British comedy series.",
    'The Rust language focuses on memory safety.',
    'The Great Wall of China is thousands of kilometres long.',
    'Mount Everest is the highest mountain above sea level.',
    'The Amazon river flows through South America.',
    'Coffee is one of the most traded commodities in the world.',
    'Football is the most popular sport in the world.',
    'The Moon orbits the Earth about every 27 days.',
    'Shakespeare wrote Hamlet around 1600.',
    'Water boils at 100 degrees Celsius at sea level.',
    'The piano was invented in Italy around 1700.',
    'Honey bees communicate through a waggle dance.',
    'The Sahara is the largest hot desert.',
    'Bicycles were first developed in the nineteenth century.',
]


def _table(rows: list[dict], sch: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=sch)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    enc = SpladeEncoder("splade-tiny", frozen=True)
    docs = [p for conv in CONVERSATIONS for *_, p in conv] + DISTRACTORS
    doc_ids = [f"d{i:02d}" for i in range(len(docs))]
    vecs = enc.encode(docs, 256)
    pq.write_table(_table([{"doc_id": d, "term_ids": i.tolist(), "weights": w.tolist()}
                           for d, (i, w) in zip(doc_ids, vecs)], schema.DOC_VECTORS), root / "docs.parquet")
    turns, qrels, rewrites, k = [], [], [], 0
    for c, conv in enumerate(CONVERSATIONS):
        history = []
        for n, (q, a, rw, _) in enumerate(conv, start=1):
            tid = f"c{c}_{n}"
            turns.append({"turn_id": tid, "conversation_id": f"c{c}", "turn": n, "question": q,
                          "history": list(history),
                          "answer": a, "human_rewrite": rw, "split": "train"})
            qrels.append({"turn_id": tid, "doc_id": doc_ids[k], "relevance": 1})
            rewrites.append((tid, rw))
            history += [{"role": "user", "text": q}, {"role": "agent", "text": a}]
            k += 1
    qrels.append({"turn_id": "c0_3", "doc_id": doc_ids[0], "relevance": 1})  # a 2nd positive, ranked lower
    qrels.append({"turn_id": "c1_2", "doc_id": doc_ids[20], "relevance": 0})  # below min_relevance
    turns.append({**turns[0], "turn_id": "test_1", "split": "test"})  # not a train turn
    turns.append({**turns[1], "turn_id": "noqrel_2"})  # skipped: no positive
    pq.write_table(_table(turns, schema.TURNS), root / "turns.parquet")
    pq.write_table(_table(qrels, schema.QRELS), root / "qrels.parquet")
    dense = torch.zeros(len(docs), enc.vocab_size)
    for r, (i, w) in enumerate(vecs):
        dense[r, torch.from_numpy(i.astype(np.int64))] = torch.from_numpy(w)
    run = []
    for (tid, rw), (i, w) in zip(rewrites, enc.encode([r for _, r in rewrites], 256)):
        q = torch.zeros(enc.vocab_size)
        q[torch.from_numpy(i.astype(np.int64))] = torch.from_numpy(w)
        scores = (dense @ q).double().numpy()
        for rank, d in enumerate(np.argsort(-scores, kind="stable"), start=1):
            run.append({"turn_id": tid, "doc_id": doc_ids[d], "system": "human", "score": float(scores[d]),
                        "rank": rank})
    pq.write_table(_table(run, schema.RUNS), root / "run.parquet")
    return {"turns": root / "turns.parquet", "qrels": root / "qrels.parquet", "run": root / "run.parquet",
            "docs": root / "docs.parquet", "enc": enc, "root": root}


def cfg(**kw) -> DistillConfig:
    # 3 steps per epoch; the window holds 6-7 candidates, so every epoch sees the same passages: the loss
    # curve is not hidden by resampling noise
    base = dict(lr=3e-4, warmup_ratio=0.0, batch_size=4, epochs=2, n_negatives=6, negative_window=(2, 8),
                positive_score="rank11")
    return DistillConfig(**{**base, **kw})


MAX_LENGTH = 64


def source(data, **kw) -> Source:
    return Source(data["turns"], data["qrels"], data["run"], data["docs"], **kw)


def examples_of(data, config, **kw):
    return build_examples(config, [source(data, **kw)], format_conversation)


def train(data, out, config, progress=None, **kw):
    return train_student(config, "splade-tiny", [source(data)], out, max_length=MAX_LENGTH, progress=progress, **kw)


def test_examples_window_positive_scores_and_sampling(data):
    run = pq.read_table(data["run"]).to_pylist()
    config = cfg(negative_window=(2, 30))
    examples, skipped, store, _ = examples_of(data, config)
    assert len(examples) == 12 and skipped["no_positive"] == 1 and sum(skipped.values()) == 1
    teach, *_ = examples_of(data, config.model_copy(update={"positive_score": "teacher"}))
    row_to_doc = {v: k for k, v in store.row.items()}
    branches = set()
    for ex, ex_teacher in zip(examples, teach):
        by_doc = {r["doc_id"]: r for r in run if r["turn_id"] == ex.turn_id}
        positives = [row_to_doc[int(r)] for r in ex.positives]
        assert len(positives) == (2 if ex.turn_id == "c0_3" else 1)
        assert not set(positives) & {row_to_doc[int(r)] for r in ex.candidates}  # positives removed
        assert all(2 <= by_doc[row_to_doc[int(r)]]["rank"] <= 30 for r in ex.candidates)  # inside the window
        rank2 = next(r["score"] for r in by_doc.values() if r["rank"] == 2)
        for j, pos in enumerate(positives):
            inside = 2 <= by_doc[pos]["rank"] <= 30
            # "rank11" (here rank 2, the window's first rank) unless inside the window; "teacher": its own score
            assert ex.positive_scores[j] == pytest.approx(by_doc[pos]["score"] if inside else rank2)
            assert ex_teacher.positive_scores[j] == pytest.approx(by_doc[pos]["score"])
            branches.add(inside)
    assert branches == {True, False}
    # fewer candidates than negatives: all of them, padded with replacement; same seed + epoch -> same batches
    few = cfg(negative_window=(2, 5), n_negatives=6)
    ex_few, *_ = examples_of(data, few)
    texts, rows, scores = next(epoch_batches(ex_few, few, 0))
    assert rows.shape == scores.shape == (4, 7)
    by_text = {e.text: e for e in ex_few}
    for text, row in zip(texts, rows):
        cands = by_text[text].candidates
        assert len(cands) < 6 and set(cands.tolist()) == set(row[1:].tolist())  # every candidate, then repeats
    a, b = list(epoch_batches(examples, config, 1)), list(epoch_batches(examples, config, 1))
    assert all(np.array_equal(x[1], y[1]) and x[0] == y[0] for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, epoch_batches(examples, config, 0)))


def _eval_kl(encoder: SpladeEncoder, data, config: DistillConfig) -> float:
    """KL of the distillation objective in eval mode (no dropout) over fixed samples of 3 epochs."""
    examples, _, store, _ = examples_of(data, config)
    values = []
    with torch.no_grad():
        for epoch in range(3):
            for texts, rows, teacher in epoch_batches(examples, config, epoch):
                uniq, inverse = np.unique(rows, return_inverse=True)
                student = (encoder.eval()(texts, MAX_LENGTH) @ store.dense(uniq, encoder.vocab_size, "cpu").T)
                student = student.gather(1, torch.from_numpy(inverse.reshape(rows.shape)))
                values.append(kl_distillation(student, torch.from_numpy(teacher)).item())
    return float(np.mean(values))


@pytest.mark.slow  # about 40 s on a loaded 2-core machine: make test-fast skips it
def test_train_outputs_loss_and_frozen_document_side(data, tmp_path):
    weights_file = f"{resolve('splade-tiny').path}/model.safetensors"
    before = (sha256_path(data["docs"]), sha256_path(weights_file))
    seen = []
    config = cfg(epochs=3)
    summary = train(data, tmp_path / "a", config, progress=lambda d, t: seen.append((d, t)))
    assert summary["examples"] == 12 and summary["skipped"]["no_positive"] == 1
    assert summary["steps"] == 9 and seen[-1] == (9, 9) and summary["examples_per_s"] > 0
    loss = pq.read_table(tmp_path / "a" / "loss.parquet").to_pydict()
    assert {"step", "epoch", "total", "kl", "contrastive", "flops", "lambda_q", "anti_zero", "lr"} <= set(loss)
    assert loss["step"] == list(range(1, 10)) and loss["lr"][0] == pytest.approx(3e-4)
    by_epoch = [np.mean([v for v, e in zip(loss["kl"], loss["epoch"]) if e == k]) for k in (1, 2, 3)]
    assert by_epoch[2] < 0.5 * by_epoch[0]  # the training loss went down
    AutoTokenizer.from_pretrained(str(tmp_path / "a" / "student"))
    model = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "a" / "student"))
    original = AutoModelForMaskedLM.from_pretrained(resolve("splade-tiny").path)
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                           original.bert.encoder.layer[0].attention.self.query.weight)  # the student moved
    assert (sha256_path(data["docs"]), sha256_path(weights_file)) == before  # document side untouched
    # the distillation loss (eval mode, fixed samples) went down
    start = _eval_kl(SpladeEncoder("splade-tiny"), data, config)
    end = _eval_kl(SpladeEncoder(str(tmp_path / "a" / "student")), data, config)
    assert end < 0.5 * start


@pytest.mark.slow  # about 40 s on a loaded 2-core machine: make test-fast skips it
def test_resume_after_interruption_equals_uninterrupted(data, tmp_path):
    config = cfg(epochs=2)
    full = train(data, tmp_path / "full", config)

    def crash(done, total):
        if done == 4:  # mid-way through epoch 2 (3 steps per epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "cut", config, progress=crash)
    assert (tmp_path / "cut" / "checkpoints" / "epoch-1").is_dir() and not (tmp_path / "cut" / "student").exists()
    resumed = train(data, tmp_path / "cut", config)
    assert resumed["resumed_from_epoch"] == 1 and resumed["steps"] == full["steps"] == 6
    a = load_file(tmp_path / "full" / "student" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = (pq.read_table(tmp_path / p / "loss.parquet").to_pydict() for p in ("full", "cut"))
    assert la == lb
    # a finished run called again only rewrites its outputs; other settings on the same out_dir are refused
    assert train(data, tmp_path / "cut", config)["resumed_from_epoch"] == 2
    assert torch.equal(load_file(tmp_path / "cut" / "student" / "model.safetensors")[k0 := next(iter(a))], a[k0])
    with pytest.raises(DiscoError):
        train(data, tmp_path / "cut", cfg(epochs=3))


@pytest.mark.slow  # about 40 s on a loaded 2-core machine: make test-fast skips it
def test_lambda_q_makes_queries_sparser(data, tmp_path):
    texts = [e.text for e in examples_of(data, cfg())[0]]
    nnz = {}
    for lam in (0.0, 0.01):  # FLOPS of these queries is ~20 at the start
        config = cfg(epochs=2, lr=1e-3, negative_window=(2, 30), reg="flops", lambda_q=lam, reg_warmup_ratio=0.0)
        train(data, tmp_path / str(lam), config)
        student = SpladeEncoder(str(tmp_path / str(lam) / "student"))
        nnz[lam] = np.mean([len(i) for i, _ in student.encode(texts, 64)])
    assert 0 < nnz[0.01] < 0.5 * nnz[0.0]


def test_bf16_grad_accumulation_and_max_turns(data, tmp_path):
    config = cfg(epochs=1, batch_size=2, grad_accumulation=2, max_turns=4, precision="bf16", positive_score="teacher")
    summary = train(data, tmp_path / "bf16", config)
    assert summary["examples"] == 4 and summary["steps"] == 1 and np.isfinite(summary["final_loss"])
    assert DistillConfig().model_dump()["negative_window"] == "auto"
    with pytest.raises(ValueError):
        DistillConfig(reg="none", lambda_q=0.1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of fp16")
def test_fp16_needs_cuda(data, tmp_path):
    with pytest.raises(DiscoError, match="fp16 needs a CUDA device"):
        train(data, tmp_path / "fp16", cfg(epochs=1, precision="fp16", device="cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of cuda where there is none")
def test_cuda_without_a_cuda_device_is_one_clear_error(data, tmp_path):
    with pytest.raises(DiscoError, match=r"distill.device 'cuda:0': no CUDA device here .* use distill.device=auto"):
        train(data, tmp_path / "cuda", cfg(epochs=1, device="cuda:0"))
    assert not (tmp_path / "cuda" / "checkpoints").exists()


def test_window_rule_follows_the_corpus_size():
    # small corpora: from rank 2 to an eighth of the corpus, at least 4 x n_negatives, within the run's depth
    assert window_for(278, 1000, 16) == (2, 64)
    assert window_for(469, 1000, 8) == (2, 59)
    assert window_for(4_000, 1000, 16) == (2, 500)
    assert window_for(50_000, 1000, 16) == (2, 960)
    assert window_for(50_000, 100, 16) == (2, 100)
    # the paper's corpora (millions of passages): ranks 11..960 of the top 1000
    assert window_for(100_000, 1000, 16) == (11, 960)
    assert window_for(25_700_000, 1000, 16) == (11, 960)
    auto = DistillConfig(n_negatives=16)
    assert sampling(auto, 278, 1000) == ((2, 64), "teacher")
    assert sampling(auto, 25_700_000, 1000) == ((11, 960), "rank11")
    paper = DistillConfig(negative_window=(11, 960), positive_score="rank11")
    assert sampling(paper, 278, 1000) == ((11, 960), "rank11")  # explicit values are kept as given


def test_steps_override_epochs(data, tmp_path):
    summary = train(data, tmp_path / "s", cfg(epochs=1, steps=5))  # 3 steps per epoch -> 2 epochs, stop at 5
    loss = pq.read_table(tmp_path / "s" / "loss.parquet").to_pydict()
    assert summary["steps"] == 5 and loss["step"] == [1, 2, 3, 4, 5] and loss["epoch"] == [1, 1, 1, 2, 2]


def _with_dev(data, root):
    """The same data with conversations c2 and c3 moved to the dev split."""
    turns = pq.read_table(data["turns"]).to_pylist()
    for t in turns:
        if t["conversation_id"] in ("c2", "c3") and t["split"] == "train":
            t["split"] = "dev"
    pq.write_table(_table(turns, schema.TURNS), root / "turns.parquet")
    return {**data, "turns": root / "turns.parquet"}


def test_dev_selection_keeps_the_best_epoch(data, tmp_path):
    dev_data = _with_dev(data, tmp_path)
    src = Source(dev_data["turns"], data["qrels"], data["run"], data["docs"])
    epochs = []
    summary = train_student(cfg(epochs=3), "splade-tiny", [src], tmp_path / "d", max_length=MAX_LENGTH, dev=src,
                            on_epoch=epochs.append)
    curve = pq.read_table(tmp_path / "d" / "dev.parquet").to_pylist()
    assert [r["epoch"] for r in curve] == [0, 1, 2, 3] and [r["epoch"] for r in epochs] == [1, 2, 3]
    assert summary["examples"] == 6 and summary["dev_turns"] == 6 and summary["dev_ranked"] == "corpus"
    best = max(curve, key=lambda r: (r["RR@10"], -r["epoch"]))
    assert summary["best_epoch"] == best["epoch"] and summary["best_dev"]["RR@10"] == best["RR@10"]
    # the saved student is the best epoch's: scoring it again on dev gives the best row
    from models.selection import DevSet, encode_fn
    from models.student import StudentCard

    card = StudentCard.load(tmp_path / "d" / "student")
    assert card.max_length == MAX_LENGTH and card.extra["best_epoch"] == best["epoch"]
    dev = DevSet.load(dev_data["turns"], data["qrels"], data["docs"], None, card.text, 30522, 100)
    kept = SpladeEncoder(str(tmp_path / "d" / "student"))
    assert dev.score(encode_fn(kept, MAX_LENGTH, "right"), 100) == pytest.approx(
        {m: best[m] for m in ("RR@10", "nDCG@3", "R@10", "R@100", "terms", "flops")})
    # patience 1 with a dev curve that cannot improve (lr 0): stops after epoch 1 and keeps the untrained student
    flat = train_student(cfg(epochs=4, lr=1e-12, patience=1), "splade-tiny", [src], tmp_path / "p",
                         max_length=MAX_LENGTH, dev=src)
    assert flat["epochs"] == 1 and flat["best_epoch"] == 0


@pytest.mark.slow  # about 40 s on a loaded 2-core machine: make test-fast skips it
def test_pooled_dev_counts_every_dev_turn_of_every_dataset_once(data, tmp_path):
    """Two training datasets with dev turns (distill.dev_datasets="all"): the curve is the micro-average of each
    dataset's own dev figures, and the summary counts both sets' turns."""
    from models.selection import DevSet, PooledDev, encode_fn

    dev_data = _with_dev(data, tmp_path)
    one = Source(dev_data["turns"], data["qrels"], data["run"], data["docs"], name="a")
    two = Source(dev_data["turns"], data["qrels"], data["run"], data["docs"], name="b")
    pooled = train_student(cfg(epochs=2), "splade-tiny", [one, two], tmp_path / "p", max_length=MAX_LENGTH,
                           dev=[one, two])
    single = train_student(cfg(epochs=2), "splade-tiny", [one, two], tmp_path / "s", max_length=MAX_LENGTH,
                           dev=[one])
    assert pooled["dev_turns"] == 2 * single["dev_turns"] == 12
    # a dataset without dev turns (an extra dataset under dev_datasets="first") adds nothing to the dev set
    plain = Source(data["turns"], data["qrels"], data["run"], data["docs"], name="b")
    first = train_student(cfg(epochs=2), "splade-tiny", [one, plain], tmp_path / "f", max_length=MAX_LENGTH,
                          dev=[one, plain])
    assert first["dev_turns"] == 6
    assert pq.read_table(tmp_path / "f" / "dev.parquet").to_pylist()[0] == pytest.approx(
        pq.read_table(tmp_path / "s" / "dev.parquet").to_pylist()[0])
    # the untrained student's row: the pooled average of two identical sets is the single set's figure
    first = pq.read_table(tmp_path / "p" / "dev.parquet").to_pylist()[0]
    assert first == pytest.approx(pq.read_table(tmp_path / "s" / "dev.parquet").to_pylist()[0])
    # with sets of different sizes, each turn counts once (not each set)
    full = DevSet.load(dev_data["turns"], data["qrels"], data["docs"], None, format_conversation, 30522, 100)
    half = DevSet(full.turn_ids[:2], full.texts[:2], full.qrels[:2], full.docs, full.doc_ids, full.id_rank,
                  full.ranked, questions=full.questions[:2])
    encode = encode_fn(SpladeEncoder("splade-tiny"), MAX_LENGTH, "right")
    a, b, both = full.score(encode, 100), half.score(encode, 100), PooledDev([full, half]).score(encode, 100)
    assert both == pytest.approx({m: (6 * a[m] + 2 * b[m]) / 8 for m in a})
    assert PooledDev([full, half]).turn_ids == full.turn_ids + full.turn_ids[:2]


def test_interpolation_with_the_starting_encoder_is_chosen_on_dev(data, tmp_path):
    """distill.interpolate (WiSE-FT): after the best epoch, each alpha is scored on dev and the best mix is saved."""
    from models.selection import DevSet, encode_fn
    from models.student import StudentCard

    dev_data = _with_dev(data, tmp_path)
    src = Source(dev_data["turns"], data["qrels"], data["run"], data["docs"])
    summary = train_student(cfg(epochs=2, lr=1e-3, interpolate=[0.5, 1.0]), "splade-tiny", [src], tmp_path / "w",
                            max_length=MAX_LENGTH, dev=src)
    rows = summary["interpolation_dev"]
    assert summary["best_epoch"] == 1  # (seeded) a trained epoch beat the untrained student, so alphas were tried
    assert [r["alpha"] for r in rows] == [1.0, 0.5]
    assert rows[0]["RR@10"] == pytest.approx(summary["best_dev"]["RR@10"])  # alpha 1: the best epoch itself
    chosen = max(rows, key=lambda r: (r["RR@10"], r["alpha"]))
    card = StudentCard.load(tmp_path / "w" / "student")
    assert summary["interpolation_alpha"] == card.extra["interpolation_alpha"] == chosen["alpha"]
    dev = DevSet.load(dev_data["turns"], data["qrels"], data["docs"], None, card.text, 30522, 100)
    kept = SpladeEncoder(str(tmp_path / "w" / "student"))
    assert dev.score(encode_fn(kept, MAX_LENGTH, "right"), 100) == pytest.approx(
        {m: chosen[m] for m in ("RR@10", "nDCG@3", "R@10", "R@100", "terms", "flops")})


def test_pooled_sources_and_pseudo_positives(data, tmp_path):
    config = cfg()
    one, _, _, _ = examples_of(data, config)
    both, _, store, used = build_examples(config, [source(data, name="a"), source(data, name="b")],
                                          format_conversation)
    assert len(both) == 2 * len(one) and {e.turn_id.split("/")[0] for e in both} == {"a", "b"}
    assert len(store.row) == 2 * len(examples_of(data, config)[2].row)  # each source's passages, kept apart
    assert used["a"]["negative_window"] == [2, 8] and used["b"]["examples"] == len(one)
    a, b = both[0], both[len(one)]
    assert a.text == b.text and not set(a.candidates) & set(b.candidates)
    # a train turn without qrels takes the teacher's top passage as its positive, when asked
    run = pq.read_table(data["run"]).to_pylist()
    run += [{**r, "turn_id": "noqrel_2"} for r in run if r["turn_id"] == "c0_2"]  # a run for the unjudged turn
    pq.write_table(_table(run, schema.RUNS), tmp_path / "run.parquet")
    pseudo, skipped, store, _ = build_examples(
        config, [Source(data["turns"], data["qrels"], tmp_path / "run.parquet", data["docs"], pseudo_positives=True)],
        format_conversation)
    assert len(pseudo) == len(one) + 1 and skipped["no_positive"] == 0
    extra = next(e for e in pseudo if e.pseudo)
    top = next(r["doc_id"] for r in run if r["turn_id"] == extra.turn_id and r["rank"] == 1)
    assert [k for k, v in store.row.items() if v == extra.positives[0]] == [top]


@pytest.mark.slow  # about 40 s on a loaded 2-core machine: make test-fast skips it
def test_representation_distillation_pulls_the_query_onto_the_rewrite(data, tmp_path):
    """loss 'rep_mse' (ConvDR / coSPLADE style): the student's vector moves towards the human rewrite's."""
    import polars as pl

    turns = pl.read_parquet(data["turns"]).filter(pl.col("split") == "train")
    rw = turns.select("turn_id", pl.lit("human").alias("teacher"), pl.col("human_rewrite").alias("rewrite"),
                      pl.lit("dataset").alias("prompt_hash"))
    rw.write_parquet(tmp_path / "rewrites.parquet")
    src = Source(data["turns"], data["qrels"], data["run"], data["docs"], rewrites=tmp_path / "rewrites.parquet",
                 systems=("human",))
    config = cfg(epochs=3, loss="rep_mse", learn_from="human", main_weight=1.0, contrastive_weight=0.0, lr=1e-3)
    examples, *_ = build_examples(config, [src], format_conversation)
    assert all(e.targets for e in examples) and {len(e.targets) for e in examples} == {1}
    summary = train_student(config, "splade-tiny", [src], tmp_path / "r", max_length=MAX_LENGTH)
    loss = pq.read_table(tmp_path / "r" / "loss.parquet").to_pydict()
    assert summary["steps"] == 9 and "rep_mse" in loss

    def distance(folder: str) -> float:
        enc, frozen = SpladeEncoder(folder), SpladeEncoder("splade-tiny", frozen=True)
        with torch.no_grad():
            q = enc.eval()([e.text for e in examples], MAX_LENGTH)
            target = frozen([e.targets[0] for e in examples], MAX_LENGTH)
        return float((q - target).pow(2).sum(-1).mean())

    assert distance(str(tmp_path / "r" / "student")) < 0.5 * distance("splade-tiny")


def _same_examples(a, b) -> bool:
    return len(a) == len(b) and all(
        x.turn_id == y.turn_id and x.text == y.text and x.pseudo == y.pseudo and x.targets == y.targets
        and all(np.array_equal(getattr(x, f), getattr(y, f)) and getattr(x, f).dtype == getattr(y, f).dtype
                for f in ("positives", "positive_scores", "candidates", "candidate_scores"))
        for x, y in zip(a, b))


def test_examples_do_not_depend_on_the_turn_chunk(data, tmp_path):
    """The teacher run read a few turns at a time gives the examples and document store of one pass over it."""
    run = pq.read_table(data["run"]).to_pylist()
    run += [{**r, "turn_id": "noqrel_2"} for r in run if r["turn_id"] == "c0_2"]  # a pseudo-positive turn
    pq.write_table(_table(run[::-1], schema.RUNS), tmp_path / "run.parquet")  # rows in no particular order
    for kw in ({}, {"pseudo_positives": True}):
        src = [Source(data["turns"], data["qrels"], tmp_path / "run.parquet", data["docs"], **kw)]
        for config in (cfg(negative_window=(2, 30)), cfg(positive_score="teacher", n_negatives=3)):
            whole, skipped, store, used = build_examples(config, src, format_conversation, turn_chunk=10_000)
            assert len(whole) >= 12
            for chunk in (1, 2, 5):
                got, s2, st2, u2 = build_examples(config, src, format_conversation, turn_chunk=chunk)
                assert _same_examples(got, whole) and s2 == skipped and u2 == used
                assert st2.row == store.row and all(np.array_equal(getattr(st2, f), getattr(store, f))
                                                    for f in ("offsets", "terms", "weights"))


def test_dev_set_does_not_depend_on_the_vector_file_order(data, tmp_path, monkeypatch):
    """The dev set reads the passages in the vector file's order and breaks score ties by sorted id: a shuffled
    file with tied copies gives the measures of the sorted one, ranking the corpus or the teacher's candidates."""
    from models import selection
    from models.selection import DevSet, encode_fn

    turns = pq.read_table(data["turns"]).to_pylist()
    for t in turns[:6]:
        t["split"] = "dev"
    pq.write_table(_table(turns, schema.TURNS), tmp_path / "turns.parquet")
    rows = pq.read_table(data["docs"]).to_pylist()
    rows += [{**r, "doc_id": f"{r['doc_id']}-copy"} for r in rows[:12]]  # tied with the positives
    order = np.random.default_rng(0).permutation(len(rows))
    pq.write_table(_table(sorted(rows, key=lambda r: r["doc_id"]), schema.DOC_VECTORS), tmp_path / "sorted.parquet")
    pq.write_table(_table([rows[i] for i in order], schema.DOC_VECTORS), tmp_path / "shuffled.parquet",
                   row_group_size=7)
    encode = encode_fn(data["enc"], MAX_LENGTH, "right")
    for limit in (selection.FULL_CORPUS_LIMIT, 10):  # 10: above it only the teacher's candidates are ranked
        monkeypatch.setattr(selection, "FULL_CORPUS_LIMIT", limit)
        monkeypatch.setattr(selection, "READ_BATCH", 5)
        got = [DevSet.load(tmp_path / "turns.parquet", data["qrels"], tmp_path / f"{name}.parquet", data["run"],
                           format_conversation, 30522, 100, candidates_k=4) for name in ("sorted", "shuffled")]
        assert got[0].ranked == got[1].ranked == ("corpus" if limit > 10 else "candidates")
        assert sorted(got[0].doc_ids) == sorted(got[1].doc_ids) and got[0].docs.nnz == got[1].docs.nnz
        assert got[0].score(encode, 100) == got[1].score(encode, 100)
