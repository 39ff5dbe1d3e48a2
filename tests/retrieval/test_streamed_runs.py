"""The teacher and evaluate stages' retrieval, streamed in bounded chunks, gives exactly the runs of one unchunked
call held in memory (the code before streaming), with either searcher (the exact sparse matrix or Pyserini's
Lucene impact index): same ids, order and scores. On the demo corpus through the real SPLADE-tiny encoder.

Cost: one module fixture (demo ingest, encoding 278 passages, a Lucene index), then 5 teacher passes over 120
short texts and 3 evaluate passes over 32 test turns (3 encoder systems each)."""

from __future__ import annotations

import polars as pl
import pytest

from core.paths import DEMO_DATA
from models.splade import SpladeConfig
from retrieval.datasets import get_reader
from retrieval.index.build import build_index
from retrieval.index.encode import encode_corpus
from retrieval.ingest import SplitConfig, ingest
from retrieval.runs import write_trec
from retrieval.systems import evaluate_systems, held_out, metrics, run_systems, summarize
from retrieval.teachers import teacher_runs, write_teacher_runs

CFG = SpladeConfig(doc_max_length=128)  # shorter passages: a faster fixture, the same code


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("streamed")
    ingest(get_reader("disco", DEMO_DATA), root / "data", SplitConfig())
    (root / "index").mkdir()
    encode_corpus(root / "data" / "corpus.parquet", CFG, root / "index", 100_000)
    build_index(root / "index" / "collection", root / "index" / "lucene", threads=2)
    turns = pl.read_parquet(root / "data" / "turns.parquet").filter(pl.col("human_rewrite").is_not_null()).head(60)
    # two teachers: the human rewrites and the bare last question (so fusion has overlapping and missing hits)
    rewrites = pl.concat([
        turns.select("turn_id", pl.lit("human").alias("teacher"), pl.col("human_rewrite").alias("rewrite")),
        turns.select("turn_id", pl.lit("last").alias("teacher"), pl.col("question").alias("rewrite"))],
    ).with_columns(pl.lit("x").alias("prompt_hash")).sample(fraction=1.0, shuffle=True, seed=1)
    return root, rewrites


@pytest.mark.slow  # the demo index and full runs: ~2 min loaded
def test_teacher_runs_streamed_equal_the_unchunked_run_with_either_searcher(demo):
    root, rewrites = demo
    lucene = root / "index" / "lucene"
    for fusion in ("mean_softmax", "mean_score"):
        want, want_summary = teacher_runs(rewrites, ["human", "last"], CFG, lucene, 1000, fusion, backend="lucene")
        for backend, chunk, shard_turns in (("sparse", 7, 25), ("lucene", 1000, 100_000)):
            if fusion == "mean_score" and backend == "lucene":
                continue
            out = root / f"runs-{fusion}-{backend}.parquet"
            rows, summary = write_teacher_runs(out, rewrites, ["human", "last"], CFG, lucene, 1000, fusion,
                                               shard_turns=shard_turns, backend=backend, chunk=chunk)
            got = pl.read_parquet(out)
            assert got.equals(want), (fusion, backend)
            assert rows == want.height and summary == want_summary, (fusion, backend)
    # long lists (most of the 278 passages per turn): ties among low scores are exercised
    assert set(want["system"]) == {"human", "last", "fused"} and want.height > 40_000
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]  # no part files left behind


@pytest.mark.slow  # the demo index and full runs: ~2 min loaded
def test_evaluate_streamed_equals_the_unchunked_runs_with_either_searcher(demo):
    root, rewrites = demo
    lucene, vectors = root / "index" / "lucene", root / "index" / "doc_vectors.parquet"
    teacher_file = root / "teacher-runs.parquet"
    write_teacher_runs(teacher_file, rewrites, ["human", "last"], CFG, lucene, 1000, "mean_score", chunk=9)
    turns, qrels = held_out(root / "data" / "turns.parquet", root / "data" / "qrels.parquet", "test")
    turns = turns.head(32)
    qrels = qrels.filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    args = (turns, CFG, "splade-tiny", lucene, vectors, teacher_file, 1000, 1)
    runs, _ = run_systems(*args, backend="lucene")  # the unchunked reference, in memory
    (root / "want").mkdir()
    for name, run in runs.items():
        write_trec(run, root / "want" / f"{name.replace(':', '-')}.trec", name)
    want = metrics(runs, turns, qrels, 1)
    for backend, chunk in (("sparse", 4), ("lucene", 1000)):
        out = root / f"eval-{backend}"
        out.mkdir()
        per_q, efficiency = evaluate_systems(turns, qrels, CFG, "splade-tiny", lucene, vectors, teacher_file, 1000,
                                             1, 1, out, backend=backend, chunk=chunk)
        assert summarize(per_q, turns) == want, backend
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (root / "want").iterdir())
        for f in (root / "want").iterdir():
            assert (out / f.name).read_bytes() == f.read_bytes(), (backend, f.name)
        assert set(efficiency) == {"last_turn", "conversation", "disco"}
    assert set(runs) == {"last_turn", "conversation", "disco", "rewrite:human", "rewrite:last", "rewrite:fused"}
    assert min(run.height for run in runs.values()) > 1_000


@pytest.mark.slow  # the module's demo index and teacher runs: ~55 s loaded
def test_fused_run_averages_the_chosen_teachers_only(demo):
    """``teacher.fuse``: a fused run of one chosen teacher equals that teacher's run, streamed or not."""
    root, rewrites = demo
    lucene = root / "index" / "lucene"
    want, summary = teacher_runs(rewrites, ["human", "last"], CFG, lucene, 1000, "mean_score", backend="sparse",
                                 fuse_only=["human", "other"])
    fused = want.filter(pl.col("system") == "fused").drop("system")
    human = want.filter(pl.col("system") == "human").drop("system")
    assert fused.equals(human) and summary[-1]["teacher"].endswith(": human)")
    out = root / "runs-fuse-only.parquet"
    write_teacher_runs(out, rewrites, ["human", "last"], CFG, lucene, 1000, "mean_score", backend="sparse",
                       fuse_only=["human"])
    assert pl.read_parquet(out).equals(want)
