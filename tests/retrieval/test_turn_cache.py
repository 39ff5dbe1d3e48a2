"""Per-turn reuse of teacher runs (retrieval/turn_cache.py): a dataset that grows is searched for its new query
texts only, and the stage's runs equal those of the uncached streamed computation (write_teacher_runs).

Cost: the small demo slice (23 turns, ~40 passages) encoded and indexed once, then three small teacher passes."""

from __future__ import annotations

import polars as pl
import pytest

from models.splade import SpladeConfig
from retrieval.datasets import get_reader
from retrieval.index.build import build_index
from retrieval.index.encode import encode_corpus
from retrieval.ingest import SplitConfig, ingest
from retrieval.teachers import write_teacher_runs
from retrieval.turn_cache import RunCache, cached_teacher_runs

CFG = SpladeConfig(doc_max_length=128)
ORDER = ["system", "turn_id", "rank"]


@pytest.fixture(scope="module")
def small(tmp_path_factory, small_demo_slice):
    root = tmp_path_factory.mktemp("turn-cache")
    ingest(get_reader("disco", small_demo_slice), root / "data", SplitConfig())
    (root / "index").mkdir()
    encode_corpus(root / "data" / "corpus.parquet", CFG, root / "index", 100_000)
    build_index(root / "index" / "collection", root / "index" / "lucene", threads=1)
    turns = pl.read_parquet(root / "data" / "turns.parquet").filter(pl.col("human_rewrite").is_not_null())
    rewrites = pl.concat([
        turns.select("turn_id", pl.lit("human").alias("teacher"), pl.col("human_rewrite").alias("rewrite")),
        turns.select("turn_id", pl.lit("last").alias("teacher"), pl.col("question").alias("rewrite"))],
    ).with_columns(pl.lit("x").alias("prompt_hash"))
    return root, turns, rewrites


def test_a_grown_dataset_searches_only_its_new_texts_and_equals_the_uncached_runs(small):
    root, turns, rewrites = small
    lucene, cache = root / "index" / "lucene", root / "cache"
    first = set(turns["conversation_id"].unique().sort().to_list()[:2])
    old_ids = turns.filter(pl.col("conversation_id").is_in(list(first)))["turn_id"].to_list()
    old = rewrites.filter(pl.col("turn_id").is_in(old_ids))
    args = (["human", "last"], CFG, lucene, "corpus-sha", 100, "mean_softmax", cache)

    rows, _, reuse = cached_teacher_runs(root / "a.parquet", old, *args, chunk=5)
    distinct_old = old["rewrite"].n_unique()
    assert reuse == {"computed_turns": len(old), "reused_turns": 0, "searched_texts": distinct_old}

    rows, summary, reuse = cached_teacher_runs(root / "b.parquet", rewrites, *args, chunk=5)
    assert reuse["reused_turns"] == len(old) and reuse["computed_turns"] == len(rewrites) - len(old)
    assert reuse["searched_texts"] == rewrites["rewrite"].n_unique() - distinct_old  # the new texts, once each

    want_rows, want_summary = write_teacher_runs(root / "want.parquet", rewrites, ["human", "last"], CFG, lucene,
                                                 100, "mean_softmax", backend="auto", chunk=5, shard_turns=7)
    assert rows == want_rows and summary == want_summary
    assert pl.read_parquet(root / "b.parquet").sort(ORDER).equals(pl.read_parquet(root / "want.parquet").sort(ORDER))
    # the same file row for row (the Ray runner's shards write it so: tests/ops/test_ray.py compares the two)
    cached_teacher_runs(root / "d.parquet", rewrites, *args, chunk=5, shard_turns=7)
    assert pl.read_parquet(root / "d.parquet").equals(pl.read_parquet(root / "want.parquet"))

    # the same texts again: nothing searched; another k is another cache
    _, _, reuse = cached_teacher_runs(root / "c.parquet", rewrites, *args)
    assert reuse["computed_turns"] == 0 and reuse["searched_texts"] == 0
    assert len(list(cache.iterdir())) == 1 and len(RunCache(cache, {}).parts()) == 0
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
