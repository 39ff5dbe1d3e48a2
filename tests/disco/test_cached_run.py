"""A fully cached `disco run` stays light: it imports neither torch, transformers, Pyserini (and its JVM bridge)
nor scipy (issue 12, part 5: the cached demo under 5 s; those imports were about 60% of a warm cached command).

The guard (slow): a real run of a small demo slice, then the same command in a fresh interpreter under ``python -X
importtime`` (the forked CLI of tests/disco/conftest.py has torch imported already), which lists every module the
process imported: the rerun must be served from cache and must not list any of them. A quick check for the
development loop: what `disco run` imports before its flow starts, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages.graph import NAMES

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "pyserini", "jnius", "scipy", "mlflow")  # mlflow: the registry (issue 29)
# the demo preset, short: the human teacher only (no LLM), one epoch, one latency query
SETTINGS = ["data.split.test_fraction=0.25", 'teacher.systems=["human"]', "distill.learn_from=human", "distill.epochs=1", "distill.steps=null",
            "distill.n_negatives=4", "distill.negative_window=[2, 100]", "evaluate.latency_queries=1"]


def _imported(importtime_stderr: str) -> set[str]:
    """Top-level package names of the modules a ``-X importtime`` process imported."""
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_what_disco_run_imports_at_start_is_no_model_library():
    code = ("import json, sys, disco.cli, stages.config, stages.graph, flows.pipeline, tasks.stage, core.lock, "
            "retrieval.report; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "prefect" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.slow
def test_a_fully_cached_run_imports_no_model_library(cli, small_demo_slice, tmp_path):
    args = ["run", "demo", "--data", str(small_demo_slice), "--out", str(tmp_path / "run"),
            *[a for s in SETTINGS for a in ("--set", s)]]
    first = cli.run(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    metrics = (tmp_path / "run" / "metrics.json").read_text()

    again = subprocess.run([sys.executable, "-X", "importtime", "-m", "disco.cli", *args], cwd=cli.root,
                           env=cli.env(), capture_output=True, text=True, timeout=600)
    shown = again.stdout + again.stderr
    assert again.returncode == 0, shown[-5000:]
    assert shown.count("Finished in state Cached") == len(NAMES), shown[-5000:]  # every stage from cache
    assert (tmp_path / "run" / "metrics.json").read_text() == metrics
    imported = _imported(again.stderr)
    assert {"prefect", "polars", "disco", "stages"} <= imported, "no import listing: -X importtime changed?"
    heavy = sorted(imported & set(HEAVY))
    assert not heavy, (f"a fully cached run imported {heavy}: import them inside the functions that compute "
                       "(stages/*.py run functions, retrieval/, models/), not at module level")
