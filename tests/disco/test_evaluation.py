from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from disco.evaluation import aggregate, by_depth, flops, per_query


def test_measures_on_a_hand_checked_case():
    run = pl.DataFrame({"turn_id": ["a", "a", "b"], "doc_id": ["d1", "d2", "d3"], "score": [2.0, 1.0, 1.0]})
    qrels = pl.DataFrame({"turn_id": ["a", "b", "c"], "doc_id": ["d2", "d9", "d1"], "relevance": [2, 1, 2]})
    pq = per_query(run, qrels)
    assert pq["a"]["RR@10"] == 0.5 and pq["a"]["R@10"] == 1.0
    assert pq["a"]["nDCG@3"] == pytest.approx(1 / np.log2(3))  # one grade-2 passage at rank 2
    assert pq["c"] == {"RR@10": 0.0, "nDCG@3": 0.0, "R@10": 0.0, "R@100": 0.0}  # judged, not retrieved
    assert aggregate(pq)["RR@10"] == pytest.approx(0.5 / 3)


def test_relevance_threshold_for_binary_measures():
    run = pl.DataFrame({"turn_id": ["a", "a"], "doc_id": ["d1", "d2"], "score": [2.0, 1.0]})
    qrels = pl.DataFrame({"turn_id": ["a", "a"], "doc_id": ["d1", "d2"], "relevance": [1, 2]})
    assert per_query(run, qrels, rel_threshold=1)["a"]["RR@10"] == 1.0
    assert per_query(run, qrels, rel_threshold=2)["a"]["RR@10"] == 0.5


def test_by_depth_buckets():
    pq = {"t1": {"RR@10": 1.0, "nDCG@3": 1, "R@10": 1, "R@100": 1},
          "t3": {"RR@10": 0.5, "nDCG@3": 0, "R@10": 0, "R@100": 1},
          "t8": {"RR@10": 0.0, "nDCG@3": 0, "R@10": 0, "R@100": 0}}
    d = by_depth(pq, {"t1": 1, "t3": 3, "t8": 8})
    assert list(d) == ["1", "2-3", "7+"]
    assert d["2-3"]["RR@10"] == 0.5 and d["2-3"]["turns"] == 1


def test_flops():
    q = [np.array([0, 1]), np.array([1])]
    d = [np.array([1, 2]), np.array([2])]
    # P_q = [0.5, 1, 0], P_d = [0, 0.5, 1] -> 1 * 0.5
    assert flops(q, d, 3) == pytest.approx(0.5)


def test_token_f1():
    from disco.evaluation import token_f1

    assert token_f1("When did the bridge open?", "when did the bridge open") == 1.0
    # 2 shared tokens of 4 predicted and 2 reference tokens: P = 0.5, R = 1 -> F1 = 2/3
    assert token_f1("the bridge opened late", "the bridge") == pytest.approx(2 / 3)
    assert token_f1("", "x") == 0.0
