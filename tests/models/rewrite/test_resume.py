"""rewrite_turns is resumable: parts on disk, skip what is done, discard parts of another prompt hash."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from core.errors import DiscoError
from core.schema import REWRITES
from models.rewrite import RewriteConfig, prompt_hash, rewrite_turns, rewrites_table

CFG = RewriteConfig(max_new_tokens=6, batch_size=2, retry_min_words=1)


def _parts(d):
    return sorted(p.name for p in d.glob("part-*.parquet"))


@pytest.mark.slow  # generates with SmolLM2
def test_resume_regenerates_only_missing_turns(smollm, turns, tmp_path):
    parts = tmp_path / "parts"
    calls = []
    st1: dict = {}
    first = rewrite_turns(turns, CFG, parts, progress=lambda d, t: calls.append((d, t)), rewriter=smollm,
                          stats=st1, chunk_size=2)
    assert [r["turn_id"] for r in first] == [t["turn_id"] for t in turns]
    assert all(r["rewrite"] and r["attempts"] in (1, 2) for r in first)
    assert st1["generated"] == 6 and st1["skipped"] == 0 and st1["parts_written"] == 3
    assert st1["generate_calls"] >= 3
    assert _parts(parts) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)
    assert json.loads((parts / "meta.json").read_text())["prompt_hash"] == prompt_hash(CFG)

    # A kill after two parts: drop the middle one; only its 2 turns are generated again.
    lost = pq.read_table(parts / "part-00001.parquet").column("turn_id").to_pylist()
    (parts / "part-00001.parquet").unlink()
    st2: dict = {}
    calls.clear()
    second = rewrite_turns(turns, CFG, parts, progress=lambda d, t: calls.append((d, t)), rewriter=smollm,
                           stats=st2, chunk_size=2)
    assert st2["skipped"] == 4 and st2["generated"] == 2 and st2["parts_written"] == 1
    assert 1 <= st2["generate_calls"] <= 2  # one batch (+ its retry at most)
    assert calls[0] == (4, 6) and calls[-1] == (6, 6)
    assert second == first
    new = pq.read_table(parts / "part-00003.parquet").column("turn_id").to_pylist()
    assert new == lost

    # Everything done: no model needed at all (rewriter=None would load one otherwise).
    st3: dict = {}
    assert rewrite_turns(turns, CFG, parts, stats=st3, chunk_size=2) == first
    assert st3["generated"] == 0 and st3["generate_calls"] == 0

    # A changed question for one turn: that turn only is generated again.
    changed = [dict(t) for t in turns]
    changed[0]["question"] = "When did the band break up?"
    st4: dict = {}
    rewrite_turns(changed, CFG, parts, rewriter=smollm, stats=st4, chunk_size=2)
    assert st4["generated"] == 1 and st4["skipped"] == 5


@pytest.mark.slow  # generates with SmolLM2 (its fixture loads in ~30 s loaded)
def test_parts_of_another_prompt_hash_are_discarded(smollm, turns, tmp_path):
    parts = tmp_path / "parts"
    rewrite_turns(turns[:1], CFG, parts, rewriter=smollm, chunk_size=2)
    assert _parts(parts) == ["part-00000.parquet"]
    other = CFG.model_copy(update={"max_new_tokens": 5})
    assert prompt_hash(other) != prompt_hash(CFG)
    st: dict = {}
    rewrite_turns(turns[:1], other, parts, rewriter=smollm, stats=st, chunk_size=2)
    assert st["skipped"] == 0 and st["generated"] == 1
    assert json.loads((parts / "meta.json").read_text())["prompt_hash"] == prompt_hash(other)
    assert _parts(parts) == ["part-00000.parquet"]  # the old part was deleted, numbering restarts


def test_rewrites_table_schema(turns, tmp_path):
    rows = [{"turn_id": t["turn_id"], "rewrite": "x y z", "attempts": 1} for t in turns]
    table = rewrites_table(rows, RewriteConfig(name="smollm2"))
    assert table.schema.equals(REWRITES)
    assert set(table.column("teacher").to_pylist()) == {"smollm2"}
    assert set(table.column("prompt_hash").to_pylist()) == {prompt_hash(RewriteConfig())}


def test_duplicate_turn_ids_are_an_error(turns, tmp_path):
    with pytest.raises(DiscoError, match="twice"):
        rewrite_turns([turns[0], turns[0]], CFG, tmp_path / "parts")
