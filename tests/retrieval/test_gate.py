"""The promotion gate's decision (retrieval/gate.py) on per-turn measures: promoted only when the measure is better
with p < alpha and the guard measure does not drop beyond its tolerance; the first student is promoted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from retrieval.gate import GateConfig, decide

TURNS = [f"t{i}" for i in range(40)]


def _per_q(rr: list[float], r100: list[float]) -> dict[str, dict[str, float]]:
    return {t: {"RR@10": a, "nDCG@3": a, "R@10": a, "R@100": b} for t, a, b in zip(TURNS, rr, r100)}


def test_better_is_promoted_worse_and_unsure_are_kept_out():
    serving = _per_q([0.5] * 40, [0.8] * 40)
    better = _per_q([1.0] * 30 + [0.5] * 10, [0.8] * 40)
    d = decide(better, serving, GateConfig())
    assert d["promote"] and "promoted" in d["reason"] and d["turns"] == 40
    row = next(r for r in d["table"] if r["measure"] == "RR@10")
    assert row["diff"] == 0.375 and row["p"] < 0.01 and row["wins/ties/losses"] == "30/10/0"

    worse = decide(serving, better, GateConfig())
    assert not worse["promote"] and "kept out" in worse["reason"]
    unsure = decide(_per_q([0.5] * 38 + [1.0, 1.0], [0.8] * 40), serving, GateConfig())  # +0.025, 2 wins: p ~ 0.5
    assert not unsure["promote"] and "not better" in unsure["reason"]


def test_a_drop_of_the_guard_measure_beyond_its_tolerance_keeps_a_better_student_out():
    serving = _per_q([0.5] * 40, [0.8] * 40)
    better_rr_worse_recall = _per_q([1.0] * 30 + [0.5] * 10, [0.7] * 40)
    d = decide(better_rr_worse_recall, serving, GateConfig())
    assert not d["promote"] and "R@100 dropped" in d["reason"]
    assert decide(better_rr_worse_recall, serving, GateConfig(guard_tolerance=0.1))["promote"]


def test_the_first_student_is_promoted_and_the_config_is_checked():
    d = decide(_per_q([0.5] * 40, [0.8] * 40), None, GateConfig())
    assert d["promote"] and "first" in d["reason"] and d["table"][0]["serving"] is None
    with pytest.raises(ValidationError, match="extra"):
        GateConfig.model_validate({"alpah": 0.05})
    with pytest.raises(ValidationError, match="gate.guard"):
        GateConfig(guard="R@1000")
    with pytest.raises(ValidationError):
        GateConfig(alpha=0)
