from __future__ import annotations

from retrieval.report import markdown_report

SYSTEMS = {s: {"RR@10": 0.3, "nDCG@3": 0.2, "R@10": 0.4, "R@100": 0.7} for s in ("last_turn", "disco")}


def _test(diff, p):
    return {"diff": diff, "p": p, "ci": [diff - 0.05, diff + 0.05], "wins": 20, "ties": 30, "losses": 10,
            "n": 60, "trials": 10_000}


def test_report_renders_significance_table():
    metrics = {"dataset": "demo", "turns": 60, "systems": SYSTEMS,
               "significance": {"last_turn": {"RR@10": _test(0.1, 0.0012), "R@100": _test(0.02, 0.31)}}}
    md = markdown_report(metrics, "metrics.png")
    assert "## disco vs each system (paired randomization test, 10,000 trials)" in md
    assert "| system | measure | diff | 95% CI | p | wins/ties/losses |" in md
    assert "| last_turn | RR@10 | +0.100 | [+0.050, +0.150] | 0.0012 * | 20/30/10 |" in md
    assert "| last_turn | R@100 | +0.020 | [-0.030, +0.070] | 0.3100 | 20/30/10 |" in md


def test_report_without_significance():
    md = markdown_report({"dataset": "demo", "turns": 60, "systems": SYSTEMS}, "metrics.png")
    assert "paired randomization" not in md and "| disco |" in md and "![metrics](metrics.png)" in md
