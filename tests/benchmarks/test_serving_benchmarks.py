"""The pure helpers of benchmarks/query_latency.py and benchmarks/service.py (the benchmarks run on demand)."""

from __future__ import annotations

import importlib

import pytest


def _load(name: str):
    """A benchmark module (the repository root is on pytest's path: pyproject.toml)."""
    return importlib.import_module(f"benchmarks.{name}")


def test_latency_percentiles_and_ratios():
    lat = _load("query_latency")
    rows, ratios = lat.summarise([10.0] * 19 + [30.0], [1000.0] * 19 + [5000.0])
    assert rows[0]["p50"] == 10.0 and rows[0]["n"] == 20
    assert rows[0]["p95"] == pytest.approx(11.0) and rows[1]["p95"] == pytest.approx(1200.0)
    assert ratios["p50"] == pytest.approx(100.0)
    md = lat.markdown(rows, ratios, {"run": "r", "turns": 20, "llm": "m", "max_new_tokens": 8, "threads": 2})
    assert "| student (format + encode + search) | 20 | 10.0 |" in md and "p50 100x" in md


def test_service_markdown_reports_errors_rss_and_fuzz():
    svc = _load("service")

    def level(clients: int, rps: float) -> dict:
        return {"clients": clients, "requests": 100, "errors": 0, "p50": 1.0, "p95": 2.0, "p99": 3.0,
                "req_per_s": rps, "server_cpu_ms": 4.0, "client_cpu_ms": 0.5, "client_mean_ms": [1.1, 1.4]}

    results = {"batched": {"idle": [level(1, 50.0), level(16, 125.0)], "busy": [level(1, 20.0)],
                           "rss": [(0, 700.0), (500, 701.0)]}}
    md = svc.markdown(results, {"examples_per_operation": 5, "statuses": {"POST /search 4xx": 5}, "server_errors": []},
                      {"before": 0.5, "after": 2.1, "neighbours": "2 x torch matmul, 2 threads"})
    assert "| batched | idle | 1 | 100 | 0 | 1.0 | 2.0 | 3.0 | 50.0 | 4.00 / 0.50 | 1.1 / 1.4 |" in md
    assert "16 clients / 1 client = 2.50x requests/s" in md and "RSS 700 -> 701 MiB (max 701)" in md
    assert "load average before: 0.5; after: 2.1" in md and "5xx answers: 0" in md