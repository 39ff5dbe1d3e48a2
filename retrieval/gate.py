"""The promotion gate of continuous distillation: does a newly trained student beat the one in service?

Both students search the same fixed evaluation turns (the held-out turns of the run, whose split does not move
as the dataset grows: ``data.split.method = "hash"``) on the same index; the per-turn measures are compared with
the paired randomization test of :func:`retrieval.evaluation.paired_test`. The candidate is promoted when its
mean ``measure`` (RR@10) is higher with ``p < alpha`` and its mean ``guard`` measure (R@100) drops by no more than
``guard_tolerance``; with no student in service yet it is promoted as the first.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from core.io import Manifest
from models.splade import SpladeEncoder, vocab_tokens
from models.student import StudentCard
from retrieval import evaluation as ev
from retrieval.index.retrieve import retrieve
from retrieval.index.sparse import open_searcher
from retrieval.systems import held_out

MEASURES = tuple(ev.MEASURES)


class GateConfig(BaseModel):
    """When a new student replaces the serving one."""

    model_config = ConfigDict(extra="forbid")

    measure: str = Field("RR@10", description="the measure the candidate must improve")
    alpha: float = Field(0.1, gt=0, le=1, description="the paired test's two-sided p must be below this")
    guard: str = Field("R@100", description="a measure that must not drop by more than guard_tolerance")
    guard_tolerance: float = Field(0.0, ge=0, le=1, description="allowed drop of the guard measure (absolute)")
    split: str = Field("test", description="the fixed evaluation turns: this split of the run's dataset")
    trials: int = Field(10_000, ge=100, le=1_000_000, description="sign flips of the randomization test")

    def model_post_init(self, _ctx) -> None:
        for name in ("measure", "guard"):
            if getattr(self, name) not in MEASURES:
                raise ValueError(f"gate.{name} {getattr(self, name)!r}: one of {', '.join(MEASURES)}")


def student_per_query(student: str | Path, turns: pl.DataFrame, qrels: pl.DataFrame, lucene: str | Path,
                      k: int, rel_threshold: int, batch_size: int = 32) -> dict[str, dict[str, float]]:
    """A student's measures on each judged turn: it reads each conversation as it was trained to (its card)."""
    card = StudentCard.load(student)
    enc = SpladeEncoder(str(student), frozen=True)
    texts = {t["turn_id"]: card.text(t["question"], t["history"]) for t in turns.to_dicts()}
    searcher = open_searcher(lucene, card.quant_scale, vocab_tokens(enc.tokenizer), backend="auto")
    try:
        got = retrieve(enc, searcher, texts, system="disco", k=k, max_length=card.max_length, batch_size=batch_size,
                       scale=card.quant_scale, truncation_side=card.input.truncation_side(), chunk=max(len(texts), 1))
    finally:
        searcher.close()
    judged = set(qrels.filter(pl.col("relevance") >= rel_threshold)["turn_id"].to_list())
    per_q = {t: {m: 0.0 for m in ev.MEASURES} for t in judged}  # a judged turn with no hits scores 0
    per_q.update(ev.per_query(got.run, qrels, rel_threshold))
    return per_q


def evaluation_turns(ingest: Manifest, split: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The judged turns of ``split`` and their qrels."""
    return held_out(ingest["turns"], ingest["qrels"], split)


def decide(candidate: dict[str, dict[str, float]], serving: dict[str, dict[str, float]] | None,
           gate: GateConfig) -> dict:
    """The gate's decision: ``promote`` (bool), ``reason`` (one line) and ``table`` (one row per measure: both
    means, the difference, p, the 95% interval, wins/ties/losses), and ``turns``."""
    if serving is None:
        means = ev.aggregate(candidate)
        rows = [{"measure": m, "candidate": round(means[m], 4), "serving": None, "diff": None, "p": None,
                 "ci95": None, "wins/ties/losses": None} for m in MEASURES]
        return {"promote": True, "reason": "no student in service yet: the first one is promoted",
                "table": rows, "turns": len(candidate)}
    a, b = ev.aggregate(candidate), ev.aggregate(serving)
    rows, tests = [], {}
    for m in MEASURES:
        t = ev.paired_test(candidate, serving, m, trials=gate.trials)
        tests[m] = t
        rows.append({"measure": m, "candidate": round(a[m], 4), "serving": round(b[m], 4), "diff": round(t["diff"], 4),
                     "p": round(t["p"], 4), "ci95": [round(x, 4) for x in t["ci"]],
                     "wins/ties/losses": f"{t['wins']}/{t['ties']}/{t['losses']}"})
    main, guard = tests[gate.measure], tests[gate.guard]
    better = main["diff"] > 0 and main["p"] < gate.alpha
    guarded = guard["diff"] >= -gate.guard_tolerance - 1e-12
    if better and guarded:
        reason = (f"{gate.measure} +{main['diff']:.4f} (p = {main['p']:.4f} < {gate.alpha}) and {gate.guard} "
                  f"{guard['diff']:+.4f} (tolerance {gate.guard_tolerance}): promoted")
    elif not better:
        reason = (f"{gate.measure} {main['diff']:+.4f} with p = {main['p']:.4f}: not better at alpha {gate.alpha}; "
                  "kept out")
    else:
        reason = (f"{gate.measure} +{main['diff']:.4f} (p = {main['p']:.4f}) but {gate.guard} dropped "
                  f"{guard['diff']:+.4f}, beyond the tolerance {gate.guard_tolerance}: kept out")
    return {"promote": better and guarded, "reason": reason, "table": rows, "turns": main["n"]}
