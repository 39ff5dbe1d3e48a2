"""A dataset that grows by conversations: each old conversation keeps its split (``split.method = "hash"``) and
the index keeps its key while the corpus is unchanged (Stage.reads_outputs), while the stages reading the turns
get new keys."""

from __future__ import annotations

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
