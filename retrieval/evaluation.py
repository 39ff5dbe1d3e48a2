"""Effectiveness and efficiency measures (ir-measures), overall and by turn depth.

Measures as in the DiSCo paper: MRR@10 (RR@10), nDCG@3 on graded labels, Recall@10, Recall@100. Binary
measures count a passage as relevant when its grade is at least ``rel_threshold`` (a stated setting: TREC CAsT
and iKAT use graded labels, where the threshold matters).
"""

from __future__ import annotations

from collections import defaultdict

import ir_measures
import numpy as np
import polars as pl
from ir_measures import Qrel, ScoredDoc

from core.text import token_f1  # noqa: F401  (re-exported: rewrite_eval, rewrites)

MEASURES = ("RR@10", "nDCG@3", "R@10", "R@100")
DEPTHS = (("1", 1, 1), ("2-3", 2, 3), ("4-6", 4, 6), ("7+", 7, 10**9))


def _measures(rel_threshold: int) -> dict[str, object]:
    t = int(rel_threshold)
    return {
        "RR@10": ir_measures.parse_measure(f"RR(rel={t})@10"),
        "nDCG@3": ir_measures.parse_measure("nDCG@3"),
        "R@10": ir_measures.parse_measure(f"R(rel={t})@10"),
        "R@100": ir_measures.parse_measure(f"R(rel={t})@100"),
    }


def per_query(run: pl.DataFrame, qrels: pl.DataFrame, rel_threshold: int = 1) -> dict[str, dict[str, float]]:
    """``{turn_id: {measure: value}}`` for every judged turn (a judged turn with no results scores 0)."""
    measures = _measures(rel_threshold)
    judged = set(qrels.filter(pl.col("relevance") >= rel_threshold)["turn_id"].to_list())
    qrel_list = [Qrel(t, d, int(r)) for t, d, r in qrels.select(["turn_id", "doc_id", "relevance"]).iter_rows()]
    scored = [ScoredDoc(t, d, float(s)) for t, d, s in run.select(["turn_id", "doc_id", "score"]).iter_rows()]
    out: dict[str, dict[str, float]] = {t: {m: 0.0 for m in measures} for t in judged}
    names = {v: k for k, v in measures.items()}
    for m in ir_measures.iter_calc(list(measures.values()), qrel_list, scored):
        if m.query_id in out:
            out[m.query_id][names[m.measure]] = float(m.value)
    return out


def aggregate(per_q: dict[str, dict[str, float]]) -> dict[str, float]:
    if not per_q:
        return {m: float("nan") for m in MEASURES}
    values = [per_q[t] for t in sorted(per_q)]  # in turn order: the same sums whatever order per_q was built in
    return {m: float(np.mean([v[m] for v in values])) for m in MEASURES}


def by_depth(per_q: dict[str, dict[str, float]], turn_of: dict[str, int]) -> dict[str, dict[str, float]]:
    """Aggregates per turn-depth bucket (turn 1, 2-3, 4-6, 7+), with the number of turns in each."""
    buckets: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for q, v in per_q.items():
        n = turn_of[q]
        label = next(lab for lab, lo, hi in DEPTHS if lo <= n <= hi)
        buckets[label][q] = v
    return {lab: {**aggregate(buckets[lab]), "turns": len(buckets[lab])} for lab, _, _ in DEPTHS if buckets[lab]}


def paired_test(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], measure: str,
                trials: int = 10_000, seed: int = 0) -> dict:
    """System ``a`` against ``b`` on one measure over the same judged turns (per-query dicts from ``per_query``).

    Returns the mean difference ``diff`` (a - b); ``p``, the two-sided p-value of a paired randomization test
    (random sign flips of the per-query differences; Smucker, Allan and Carterette, "A comparison of statistical
    significance tests for information retrieval evaluation", CIKM 2007), counting the observed assignment
    (Phipson and Smyth, 2010); ``ci``, a 95% percentile paired-bootstrap interval of the mean difference; and the
    per-query ``wins``/``ties``/``losses`` of ``a``. A turn missing from one side scores 0 there, as in
    ``per_query``. All differences zero gives p = 1; no turns gives nan. Deterministic given ``seed``.
    """
    turns = sorted(set(a) | set(b))
    d = np.array([a.get(t, {}).get(measure, 0.0) - b.get(t, {}).get(measure, 0.0) for t in turns], dtype=float)
    n = len(d)
    out = {"measure": measure, "n": n, "trials": trials, "wins": int((d > 0).sum()), "ties": int((d == 0).sum()),
           "losses": int((d < 0).sum())}
    if n == 0:
        return {**out, "diff": float("nan"), "p": float("nan"), "ci": [float("nan"), float("nan")]}
    observed = float(d.mean())
    if not d.any():
        return {**out, "diff": 0.0, "p": 1.0, "ci": [0.0, 0.0]}
    rng = np.random.default_rng(seed)
    flipped, boot = [], []
    chunk = max(1, 2_000_000 // n)  # bounded memory for large test sets
    for start in range(0, trials, chunk):
        size = min(chunk, trials - start)
        flipped.append((rng.choice([-1.0, 1.0], size=(size, n)) @ d) / n)
        boot.append(d[rng.integers(0, n, size=(size, n))].mean(axis=1))
    flipped, boot = np.concatenate(flipped), np.concatenate(boot)
    extreme = int((np.abs(flipped) >= abs(observed) - 1e-12).sum())
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {**out, "diff": observed, "p": (extreme + 1) / (trials + 1), "ci": [float(lo), float(hi)]}


def flops(query_terms: list[np.ndarray], doc_terms: list[np.ndarray], vocab_size: int) -> float:
    """Expected FLOPS: sum over terms of P(term in query) * P(term in document) (Paria et al., 2020)."""
    pq = np.zeros(vocab_size)
    pd = np.zeros(vocab_size)
    for t in query_terms:
        pq[t] += 1
    for t in doc_terms:
        pd[t] += 1
    return float((pq / max(len(query_terms), 1)) @ (pd / max(len(doc_terms), 1)))
