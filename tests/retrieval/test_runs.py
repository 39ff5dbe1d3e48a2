from __future__ import annotations

import math

import polars as pl
import pytest

from retrieval.index.ranking import rank
from retrieval.runs import fuse, write_trec


def _run(rows):
    return pl.DataFrame(rows, schema=["turn_id", "doc_id", "system", "score"], orient="row")


def test_rank_orders_by_score_then_doc_id():
    r = rank(_run([("q", "b", "s", 1.0), ("q", "a", "s", 1.0), ("q", "c", "s", 3.0)]))
    assert r["doc_id"].to_list() == ["c", "a", "b"]
    assert r["rank"].to_list() == [1, 2, 3]


def test_fuse_mean_score_over_teachers_that_retrieved_the_pair():
    runs = _run([("q", "d1", "human", 10.0), ("q", "d2", "human", 6.0),
                 ("q", "d1", "llm", 4.0), ("q", "d3", "llm", 9.0)])
    fused = fuse(runs, "mean_score")
    scores = dict(zip(fused["doc_id"], fused["score"]))
    assert scores == {"d1": 7.0, "d2": 6.0, "d3": 9.0}  # d2 and d3: one teacher each, not halved
    assert fused["doc_id"].to_list() == ["d3", "d1", "d2"]
    assert set(fused["system"]) == {"fused"}


def test_fuse_mean_softmax():
    runs = _run([("q", "d1", "a", math.log(3.0)), ("q", "d2", "a", 0.0), ("q", "d1", "b", 0.0)])
    fused = fuse(runs, "mean_softmax")
    scores = dict(zip(fused["doc_id"], fused["score"]))
    # teacher a: softmax = (0.75, 0.25); teacher b: (1.0 for d1); a passage b missed counts 0. Scores are log p.
    assert scores["d1"] == pytest.approx(math.log((0.75 + 1.0) / 2))
    assert scores["d2"] == pytest.approx(math.log(0.25 / 2))
    assert fused["doc_id"].to_list() == ["d1", "d2"]


def test_fuse_mean_softmax_scores_give_back_the_fused_distribution_and_never_underflow():
    runs = _run([("q", "d1", "a", 900.0), ("q", "d2", "a", 0.0), ("q", "d2", "b", 5.0), ("q", "d3", "b", 5.0)])
    scores = dict(zip(*fuse(runs, "mean_softmax").select(["doc_id", "score"]).get_columns()))
    assert all(math.isfinite(v) for v in scores.values())  # p(d2 | a) = e^-900 underflows as a probability
    probs = {d: math.exp(v) for d, v in scores.items()}
    assert probs == pytest.approx({"d1": 0.5, "d2": 0.25, "d3": 0.25})


def test_write_trec(tmp_path):
    write_trec(rank(_run([("q1", "d1", "s", 2.0), ("q1", "d2", "s", 1.5)])), tmp_path / "r.trec", "tag")
    assert (tmp_path / "r.trec").read_text() == "q1 Q0 d1 1 2.000000 tag\nq1 Q0 d2 2 1.500000 tag\n"
