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


def test_report_has_every_section_in_narrow_tables():
    metrics = {"dataset": "demo", "turns": 60, "split": "test", "rel_threshold": 1, "systems": SYSTEMS,
               "efficiency": {"disco": {"query_terms": 37.727, "flops": 6.3106, "latency_ms": 16.601}},
               "by_depth": {s: {"1": {"RR@10": 0.5, "turns": 10}} for s in SYSTEMS},
               "significance": {"last_turn": {"RR@10": _test(0.1, 0.0012)}}}
    md = markdown_report(metrics, "data:image/png;base64,AAAA")
    assert "| system | RR@10 | nDCG@3 | R@10 | R@100 |" in md  # effectiveness and efficiency apart: each fits
    assert "## Efficiency" in md and "| system | q terms | FLOPS | ms/query |" in md
    assert "| disco | 37.7 | 6.31 | 16.6 |" in md
    assert "## RR@10 by turn depth" in md and "| last_turn | 0.500 |" in md
    assert "paired randomization test" in md and "![metrics](data:image/png;base64,AAAA)" in md
