"""A dataset that grows by conversations: each old conversation keeps its split (``split.method = "hash"``) and
the index keeps its key while the corpus is unchanged (Stage.reads_outputs), while the stages reading the turns
get new keys."""

from __future__ import annotations

import json

import polars as pl
import pytest

from core.io import Manifest, Output
from retrieval.ingest import SplitConfig, assign_splits
from stages.base import stage_key
from stages.config import PipelineConfig
from stages.graph import BY_NAME
from stages.base import read_fields


def test_hash_split_keeps_every_conversation_where_it_was_as_the_dataset_grows():
    cfg = SplitConfig(method="hash", test_fraction=0.3, dev_fraction=0.2)
    old = assign_splits([f"c{i}" for i in range(40)], cfg)
    new = assign_splits([f"c{i}" for i in range(200)], cfg)
    assert all(new[c] == s for c, s in old.items())
    share = sum(s == "test" for s in new.values()) / len(new)
    assert 0.2 < share < 0.4 and {"train", "dev", "test"} == set(new.values())
    # the shuffled split moves old conversations when new ones come (why continuous runs use "hash")
    moved = assign_splits([f"c{i}" for i in range(200)], SplitConfig(test_fraction=0.3))
    before = assign_splits([f"c{i}" for i in range(40)], SplitConfig(test_fraction=0.3))
    assert any(moved[c] != s for c, s in before.items())


def _ingest(turns_sha: str, corpus_sha: str) -> Manifest:
    out = {name: Output(name=name, path=f"/x/{name}", sha256=sha) for name, sha in
           (("turns", turns_sha), ("corpus", corpus_sha), ("qrels", turns_sha))}
    return Manifest(stage="ingest", key="k", dir="/x", outputs=out)


def test_index_key_follows_the_corpus_only_and_the_rewrite_key_the_turns():
    cfg = PipelineConfig()
    index, rewrite = BY_NAME["index"], BY_NAME["rewrite"]
    fields = read_fields(index, cfg)
    assert (stage_key(index, fields, {"ingest": _ingest("t1", "c")})
            == stage_key(index, fields, {"ingest": _ingest("t2", "c")})
            != stage_key(index, fields, {"ingest": _ingest("t1", "c2")}))
    rewriter = Manifest(stage="rewriter", key="r", dir="/r")
    rf = read_fields(rewrite, cfg)
    assert (stage_key(rewrite, rf, {"ingest": _ingest("t1", "c"), "rewriter": rewriter})
            != stage_key(rewrite, rf, {"ingest": _ingest("t2", "c"), "rewriter": rewriter}))


@pytest.mark.slow
def test_the_rewrite_stage_generates_the_new_turns_only(tmp_path):
    """The LLM teacher (the packaged SmolLM2, 4 new tokens) on a folder that grows by one conversation: the old
    turns' rewrites come from the parts of the first run (same turn, same prompt), only the new turn is generated.
    About 90 s on 2 busy cores (the model loads twice)."""
    from stages.config import load
    from stages.runner import run_pipeline

    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (data / "passages.jsonl").write_text(json.dumps({"id": "p1", "text": "Mercury is closest to the Sun."}) + "\n"
                                         + json.dumps({"id": "p2", "text": "Venus is the hottest planet."}) + "\n")
    conv = {"conversation_id": "x1", "turns": [{"question": "Which planet is closest to the Sun?", "rewrite": "a"},
                                               {"question": "How hot is it?", "rewrite": "b"}]}
    (data / "conversations.jsonl").write_text(json.dumps(conv) + "\n")
    (data / "qrels.tsv").write_text("turn_id\tdoc_id\trelevance\nx1_1\tp1\t1\n")
    cfg = load("demo", [str(data)], ['teacher.systems=["human","llm"]', "distill.learn_from=human", "rewriter.mode=off",
                                     "rewrite.model=smollm2-135m-instruct", "rewrite.max_new_tokens=4",
                                     "rewrite.batch_size=4", "rewrite.output_checks=false", "data.split.method=hash"])
    first = run_pipeline(cfg, out, stop="rewrite")["rewrite"]
    assert (first.stats["computed_turns"], first.stats["reused_turns"]) == (2, 0)
    new = {"conversation_id": "x2", "turns": [{"question": "Which planet is the hottest?", "rewrite": "c"}]}
    (data / "conversations-2.jsonl").write_text(json.dumps(new) + "\n")
    second = run_pipeline(cfg, out, stop="rewrite")["rewrite"]
    assert second.key != first.key
    assert (second.stats["computed_turns"], second.stats["reused_turns"]) == (1, 2)
    old = pl.read_parquet(first["rewrites"]).filter(pl.col("teacher") == "llm").sort("turn_id")
    got = pl.read_parquet(second["rewrites"]).filter(pl.col("teacher") == "llm").sort("turn_id")
    assert got.head(2).equals(old) and got["turn_id"].to_list() == ["x1_1", "x1_2", "x2_1"]
