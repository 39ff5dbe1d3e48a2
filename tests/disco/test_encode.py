"""`disco encode` on the demo passages with the real SPLADE-tiny weights: the files the index stage writes, integer
impacts equal to the encoder's vectors, resuming after an interruption, clear errors, and a Pyserini index."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from core.errors import DataError, DiscoError
from disco.cli import app
from disco.encode_cli import run_encode
from models.splade import SpladeConfig, SpladeEncoder, impact_vector, vocab_tokens
from retrieval.index.build import build_index
from retrieval.index.encode import encode_corpus, passage_input
from retrieval.index.search import ImpactSearcher

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "passages.jsonl"
N = 40  # passages used: 5 shards of 8
OPTS = dict(model="splade-tiny", batch_size=8, max_length=128, format=None, id_field="id", text_field="text",
            title_field="title", shard_size=8, scale=100, progress=False)


@pytest.fixture(scope="module")
def passages(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "passages.jsonl"
    path.write_text("".join(DEMO.read_text(encoding="utf-8").splitlines(keepends=True)[:N]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def whole(passages, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "vectors"
    stats = run_encode(passages, out, **OPTS)
    assert (stats["passages"], stats["shards"], stats["encoded"], stats["skipped"]) == (N, 5, N, 0)
    return out


def shards(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("docs-*.jsonl"))}


def test_vectors_are_the_encoders_integer_impacts(whole, passages):
    lines = [json.loads(line) for text in shards(whole).values() for line in text.splitlines()]
    rows = [json.loads(line) for line in passages.read_text().splitlines()]
    assert [r["id"] for r in rows] == [x["id"] for x in lines]
    enc = SpladeEncoder("splade-tiny", frozen=True)
    tokens = vocab_tokens(enc.tokenizer)
    (ids, w), = enc.encode([passage_input(rows[3]["title"], rows[3]["text"])], 128)
    assert lines[3] == {"id": rows[3]["id"], "contents": "", "vector": impact_vector(ids, w, tokens, 100)}
    assert all(isinstance(v, int) and v > 0 for x in lines for v in x["vector"].values())


def test_resume_after_interruption_gives_identical_files(whole, passages, tmp_path):
    broken = tmp_path / "passages.jsonl"
    lines = passages.read_text().splitlines(keepends=True)
    broken.write_text("".join(lines[:20] + ['{"id": "cut", "text": \n'] + lines[21:]))
    out = tmp_path / "vectors"
    with pytest.raises(DataError, match=r"passages.jsonl, line 21: malformed JSON"):
        run_encode(broken, out, **OPTS)  # stops while reading shard 2 (lines 17..24)
    assert sorted(shards(out)) == ["docs-00000.jsonl", "docs-00001.jsonl"]
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("docs-*.jsonl")}
    broken.write_text("".join(lines))  # the input fixed, the same passages
    stats = run_encode(broken, out, **OPTS)
    assert (stats["skipped"], stats["encoded"]) == (16, N - 16)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("docs-0000[01].jsonl")} == kept  # not rewritten
    assert shards(out) == shards(whole)
    again = run_encode(broken, out, **OPTS)
    assert (again["skipped"], again["encoded"]) == (N, 0)


def test_rerun_with_other_settings_or_input_stops(whole, passages, tmp_path):
    with pytest.raises(DiscoError, match=r"other settings \(max_length: 128 -> 64\)"):
        run_encode(passages, whole, **{**OPTS, "max_length": 64})
    copy, out = tmp_path / "passages.jsonl", tmp_path / "vectors"
    lines = passages.read_text().splitlines(keepends=True)
    copy.write_text("".join(lines))
    run_encode(copy, out, **OPTS)
    (out / "docs-00004.jsonl").unlink()
    copy.write_text("".join(lines[8:16] + lines[:8] + lines[16:]))  # the same file, other passages in shard 0
    with pytest.raises(DiscoError, match="the input changed"):
        run_encode(copy, out, **OPTS)


@pytest.mark.slow  # ~40 s loaded
def test_index_stage_writes_the_same_files_and_pyserini_indexes_them(whole, passages, tmp_path):
    import pyarrow as pa

    rows = [json.loads(line) for line in passages.read_text().splitlines()]
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist([{"doc_id": r["id"], "title": r["title"], "text": r["text"]}
                                         for r in rows]), corpus)
    stage = tmp_path / "stage"
    stage.mkdir()
    stats = encode_corpus(corpus, SpladeConfig(doc_max_length=128, batch_size=8), stage, shard_size=8)
    assert stats["passages"] == N and shards(stage / "collection") == shards(whole)
    assert pq.read_table(stage / "doc_vectors.parquet").num_rows == N
    assert shards(run_encode_parquet(corpus, tmp_path / "from-parquet")) == shards(whole)
    build_index(whole, tmp_path / "lucene", threads=1)  # the hidden settings file is not indexed
    s = ImpactSearcher(tmp_path / "lucene")
    first = json.loads(shards(whole)["docs-00000.jsonl"].splitlines()[0])
    hits = s.search({"q": first["vector"]}, k=1)
    s.close()
    assert hits["q"][0][0] == first["id"]


def run_encode_parquet(corpus: Path, out: Path) -> Path:
    run_encode(corpus, out, **OPTS)
    return out


def test_cli_errors_name_file_line_and_field(passages, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "b", "body": "y"}\n')
    res = CliRunner().invoke(app, ["encode", "--input", str(bad), "--output", str(tmp_path / "o"),
                                   "--text-field", "text", "--no-progress"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{bad}, line 2: missing field 'text'" in res.output and "body" in res.output
    res = CliRunner().invoke(app, ["encode", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path)])
    assert res.exit_code == 2 and "input not found" in res.output
    res = CliRunner().invoke(app, ["encode", "--input", str(tmp_path), "--output", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--format" in res.output


def test_doc_vectors_table_equals_the_python_lists_version():
    import numpy as np
    import pyarrow as pa

    from core import schema
    from retrieval.index.encode import vectors_table

    reps = [(np.array([3, 7], np.int32), np.array([0.5, 1.25], np.float32)),
            (np.zeros(0, np.int32), np.zeros(0, np.float32)), (np.array([1], np.int32), np.array([2.0], np.float32))]
    ids = ["a", "b", "c"]
    want = pa.Table.from_pydict({"doc_id": ids, "term_ids": [t.tolist() for t, _ in reps],
                                 "weights": [w.tolist() for _, w in reps]}, schema=schema.DOC_VECTORS)
    assert vectors_table(ids, reps).equals(want)


def test_shards_are_encoded_in_bounded_chunks_with_the_same_files(whole, passages, tmp_path, monkeypatch):
    """A shard larger than ENCODE_CHUNK is encoded (and held) a chunk at a time: the encoder never sees more than a
    chunk, and with batches of 1 (so that chunking cannot change a batch) the files are those of one pass."""
    import numpy as np

    from retrieval.index import shards as shards_mod
    from retrieval.index.encode import table_vectors, vectors_table

    monkeypatch.setattr(shards_mod, "ENCODE_CHUNK", 3)
    enc = SpladeEncoder("splade-tiny", frozen=True)
    sizes: list[int] = []
    real = enc.encode

    def counting(texts, *a, **k):
        sizes.append(len(texts))
        return real(texts, *a, **k)

    monkeypatch.setattr(enc, "encode", counting)
    rows = [json.loads(line) for line in passages.read_text().splitlines()]
    pairs = [(r["id"], passage_input(r["title"], r["text"])) for r in rows][:16]  # 2 shards of 3 + 3 + 2
    got: list[tuple[list, list]] = []
    opts = dict(max_length=128, batch_size=1, scale=100, shard_size=8)
    shards_mod.encode_shards(iter(pairs), enc, tmp_path / "chunked", on_shard=lambda i, r: got.append((i, r)),
                             **opts)
    assert sizes == [3, 3, 2, 3, 3, 2] and sum(len(i) for i, _ in got) == 16
    monkeypatch.setattr(shards_mod, "ENCODE_CHUNK", 1000)
    shards_mod.encode_shards(iter(pairs), enc, tmp_path / "whole", **opts)
    assert shards(tmp_path / "chunked") == shards(tmp_path / "whole")
    assert [d for i, _ in got for d in i] == [p[0] for p in pairs]
    # the distributed path's merge reads vectors back as numpy views, equal to what was written
    ids, reps = got[0]
    back = table_vectors(vectors_table(ids, reps))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(reps, back))
