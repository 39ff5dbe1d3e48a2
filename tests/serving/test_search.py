"""The Python search API on a real trained run: it reproduces the evaluate stage, batches, checks its input and
is safe to share between threads."""

from __future__ import annotations

import json
import threading
from collections import defaultdict

import pytest

from core.errors import DiscoError
from core.io import Manifest
from core.run_record import RunRecord
from disco.serving.search import Searcher, check_conversation

pytestmark = pytest.mark.slow


def _trec(path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run[qid][doc] = float(score)
    return run


@pytest.fixture(scope="module")
def lucene_searcher(trained_run):
    s = Searcher.open(trained_run, backend="lucene")
    yield s
    s.close()


def test_auto_backend_is_the_sparse_matrix_on_the_demo(searcher, lucene_searcher):
    assert searcher.backend == "sparse" and lucene_searcher.backend == "lucene"


@pytest.mark.parametrize("backend", ["sparse", "lucene"])
def test_api_reproduces_the_evaluate_stage_run(output, searcher, lucene_searcher, test_turns, backend):
    searcher = searcher if backend == "sparse" else lucene_searcher
    evaluated = _trec(output("evaluate", "runs") / "disco.trec")
    assert test_turns and set(evaluated) <= {t["turn_id"] for t in test_turns}
    checked = 0
    for t in test_turns:
        if t["turn_id"] not in evaluated:
            continue
        got = searcher.search(t["conversation"], k=1000)
        mine = {h.id: round(h.score, 6) for h in got.results}
        assert mine == pytest.approx(evaluated[t["turn_id"]], abs=2e-4), t["turn_id"]
        assert [h.score for h in got.results] == sorted((h.score for h in got.results), reverse=True)
        checked += 1
    assert checked >= 4


def test_results_carry_passage_text_timing_and_terms(searcher, test_turns):
    got = searcher.search(test_turns[0]["conversation"], k=5, explain=True)
    assert 0 < len(got.results) <= 5
    assert all(h.text for h in got.results)
    assert set(got.timing_ms) == {"encode", "search", "total"} and got.timing_ms["total"] > 0
    assert got.terms and all(w > 0 for w in got.terms.values())
    weights = list(got.terms.values())
    assert weights == sorted(weights, reverse=True)
    # the conversation is formatted as in training: the current question comes first (newest first)
    assert got.query.startswith(test_turns[0]["conversation"][-1]["text"].strip())


def test_batch_equals_one_at_a_time(searcher, test_turns):
    convs = [t["conversation"] for t in test_turns[:6]]
    batch = searcher.search_batch(convs, k=10)
    for conv, b in zip(convs, batch):
        one = searcher.search(conv, k=10)
        assert [h.id for h in b.results] == [h.id for h in one.results]
        assert [h.score for h in b.results] == pytest.approx([h.score for h in one.results], abs=2e-4)


@pytest.mark.parametrize("conversation, message", [
    ([], "empty"),
    ([{"speaker": "user", "text": "hi"}, {"speaker": "agent", "text": "hello"}], "must be the user's"),
    ([{"speaker": "user", "text": "   "}], "is empty"),
    ([{"speaker": "bot", "text": "hi"}], "speaker"),
    ([{"speaker": "user"}], "text"),
])
def test_bad_conversations_are_named(conversation, message):
    with pytest.raises(ValueError, match=message):
        check_conversation(conversation)


def test_k_must_be_positive(searcher):
    with pytest.raises(ValueError, match="k must be"):
        searcher.search([{"speaker": "user", "text": "hi"}], k=0)


def test_open_names_what_is_missing(tmp_path):
    with pytest.raises(DiscoError, match="run.json not found"):
        Searcher.open(tmp_path)
    RunRecord(config={}, stages={"ingest": Manifest(stage="ingest", key="k", dir=str(tmp_path))}).write(tmp_path)
    with pytest.raises(DiscoError, match="no index stage"):
        Searcher.open(tmp_path)


def test_concurrent_threads_get_the_same_answers(searcher, test_turns):
    convs = [t["conversation"] for t in test_turns[:8]]
    expected = [[h.id for h in searcher.search(c, k=10).results] for c in convs]
    got: dict[tuple[int, int], list[str]] = {}
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for rep in range(3):
                i = (w + rep) % len(convs)
                got[(w, rep)] = [h.id for h in searcher.search(convs[i], k=10).results]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(got) == 24
    for (w, rep), ids in got.items():
        assert ids == expected[(w + rep) % len(convs)]


def test_sparse_backend_refuses_impacts_that_differ_from_the_index(trained_run, output, tmp_path):
    """A copy of the index whose collection was quantised differently: auto falls back to Lucene, sparse says why."""
    import shutil

    from disco.serving.search import run_paths

    paths = run_paths(trained_run)
    index = tmp_path / "index"
    shutil.copytree(paths["lucene"].parent, index)
    shard = sorted((index / "collection").glob("*.jsonl"))[0]
    lines = shard.read_text().splitlines()
    doc = json.loads(lines[0])
    doc["vector"] = {t: v * 2 for t, v in doc["vector"].items()}  # as if quant_scale were 200
    shard.write_text("\n".join([json.dumps(doc), *lines[1:]]) + "\n")
    auto = Searcher(paths["student"], index / "lucene", backend="auto")
    try:
        assert auto.backend == "lucene"
    finally:
        auto.close()
    with pytest.raises(DiscoError, match="impacts differ"):
        Searcher(paths["student"], index / "lucene", backend="sparse")


def test_a_deepened_student_is_served_with_its_branch(trained_run, output, test_turns, tmp_path):
    """A student with a residual branch (models/branch.py, chosen on dev by issue 25's search) is searched with
    the vectors its own encoder gives (the branch included), not the base encoder's."""
    import shutil

    import numpy as np
    import torch

    from disco.serving.search import Searcher
    from models.branch import ResidualBranch
    from models.splade import SpladeEncoder, impact_vector

    student = tmp_path / "student"
    shutil.copytree(output("distill", "student"), student)
    enc = SpladeEncoder(str(student))
    enc.branch = ResidualBranch(enc.mlm, 1)
    with torch.no_grad():
        enc.branch.out.weight.normal_(0, 0.2)  # trained: no longer a no-op
    enc.branch.save(student)
    deep = Searcher(student, output("index", "lucene"), output("ingest", "corpus"))
    try:
        assert deep.encoder.extra_layers == 1
        texts = [deep.text(t["conversation"]) for t in test_turns[:5]]
        want = [impact_vector(np.asarray(i), np.asarray(w), deep.tokens, deep.card.quant_scale)
                for i, w in SpladeEncoder(str(student), frozen=True).encode(texts, deep.card.max_length)]
        base = [impact_vector(np.asarray(i), np.asarray(w), deep.tokens, deep.card.quant_scale)
                for i, w in SpladeEncoder(str(output("distill", "student")), frozen=True).encode(
                    texts, deep.card.max_length)]
        got = deep.query_vectors(texts)
        indexed = set(deep.index.terms())  # the searcher keeps the terms with postings (index_terms)
        assert got == [{t: w for t, w in v.items() if t in indexed} for v in want]
        assert got != [{t: w for t, w in v.items() if t in indexed} for v in base]
    finally:
        deep.close()


@pytest.mark.parametrize("backend", ["sparse", "lucene"])
def test_query_vectors_keep_the_index_terms_and_the_same_hits(trained_run, test_turns, backend):
    """``index_terms`` (the default): a query keeps only the terms with postings in the index, with the weights
    of the full vector, and every hit and score is the full vector's; the index's term list is the same from
    Lucene's term dictionary and from the sparse matrix."""
    full = Searcher.open(trained_run, backend=backend, index_terms=False)
    cut = Searcher.open(trained_run, backend=backend)
    try:
        indexed = set(cut.index.terms())
        assert full.terms is None and len(cut.terms) == len(indexed) < len(cut.tokens) // 2
        assert {cut.tokens[i] for i in cut.terms.tolist()} == indexed
        convs = [t["conversation"] for t in test_turns[:12]]
        texts = [cut.text(c) for c in convs]
        whole, kept = full.query_vectors(texts), cut.query_vectors(texts)
        assert any(set(v) - indexed for v in whole)  # the student does write terms no passage has
        assert kept == [{t: w for t, w in v.items() if t in indexed} for v in whole]
        for c in convs:
            assert cut.search(c, k=50).results == full.search(c, k=50).results
    finally:
        full.close(), cut.close()
