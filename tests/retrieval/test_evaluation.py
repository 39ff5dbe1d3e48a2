from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from retrieval.evaluation import aggregate, by_depth, flops, paired_test, per_query


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
    from retrieval.evaluation import token_f1

    assert token_f1("When did the bridge open?", "when did the bridge open") == 1.0
    # 2 shared tokens of 4 predicted and 2 reference tokens: P = 0.5, R = 1 -> F1 = 2/3
    assert token_f1("the bridge opened late", "the bridge") == pytest.approx(2 / 3)
    assert token_f1("", "x") == 0.0


def _pq(values, measure="RR@10"):
    return {f"t{i}": {measure: float(v)} for i, v in enumerate(values)}


def test_paired_test_identical_systems():
    a = _pq(np.random.default_rng(1).random(20))
    t = paired_test(a, a, "RR@10")
    assert t["diff"] == 0.0 and t["p"] == 1.0 and t["ci"] == [0.0, 0.0]
    assert (t["wins"], t["ties"], t["losses"]) == (0, 20, 0)


def test_paired_test_clearly_better_system():
    rng = np.random.default_rng(2)
    b = rng.random(30) * 0.5
    a = b + 0.2 + rng.normal(0, 0.05, 30)
    t = paired_test(_pq(a), _pq(b), "RR@10")
    assert t["diff"] == pytest.approx(float(np.mean(a - b)))
    assert t["p"] < 0.01 and t["ci"][0] > 0 and t["ci"][0] < t["diff"] < t["ci"][1]
    assert t["wins"] == 30
    worse = paired_test(_pq(b), _pq(a), "RR@10")  # and symmetric the other way round
    assert worse["diff"] == pytest.approx(-t["diff"]) and worse["p"] < 0.01 and worse["ci"][1] < 0


def test_paired_test_matches_exact_enumeration():
    import itertools

    d = np.array([0.5, -0.2, 0.3, 0.1, -0.4, 0.6, 0.0, 0.25])
    signs = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    exact = float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12))  # all 2^8 sign flips
    assert 0.05 < exact < 0.8  # a case where the estimate has something to get right
    t = paired_test(_pq(d + 0.3), _pq(np.full(8, 0.3)), "RR@10")
    assert t["p"] == pytest.approx(exact, abs=0.02)
    assert (t["wins"], t["ties"], t["losses"]) == (5, 1, 2)


def test_paired_test_determinism_missing_turns_and_empty():
    rng = np.random.default_rng(3)
    a, b = _pq(rng.random(15)), _pq(rng.random(15))
    assert paired_test(a, b, "RR@10", seed=7) == paired_test(a, b, "RR@10", seed=7)
    assert paired_test(a, b, "RR@10", seed=7)["p"] != paired_test(a, b, "RR@10", seed=8)["p"]
    # a turn missing from one side counts as 0 there
    t = paired_test({"x": {"RR@10": 1.0}}, {"x": {"RR@10": 1.0}, "y": {"RR@10": 0.5}}, "RR@10")
    assert t["diff"] == pytest.approx(-0.25) and (t["wins"], t["ties"], t["losses"]) == (0, 1, 1)
    e = paired_test({}, {}, "RR@10")
    assert e["n"] == 0 and np.isnan(e["diff"]) and np.isnan(e["p"]) and all(np.isnan(e["ci"]))
