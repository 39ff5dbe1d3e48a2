"""The Prefect UI as a person sees it, in Debian's headless chromium driven by Playwright: the ``pipeline``
deployment's run of the demo slice (conftest.py), its stage subflow with the stage task runs, and the artifact
pages (metrics table, loss curve, rewrite samples, teacher scores), each checked against the run's own files.

`make test` installs chromium first (`make browser`: apt-get, as root); without it this test is skipped.
Set DISCO_SCREENSHOTS=docs/img to refresh the README's screenshots (docs/img/ui-*.png).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STAGES = ("ingest", "rewrite", "index", "teacher", "distill", "evaluate")
ARTIFACTS = ("evaluate-metrics", "distill-loss-curve", "rewrite-samples", "teacher-scores")


def _subflow(ops, server, flow_run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentTaskRunId

    with ops.client_for(server) as client:
        parent = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        [sub] = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in parent])))
        return sub


def test_pipeline_run_subflow_and_artifacts_in_the_browser(ops, ops_server, deployed_run, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: run `make browser` (apt-get install chromium, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip: .[test])")
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    base = ops_server["url"].removesuffix("/api")
    run = deployed_run["flow_run"]
    sub = _subflow(ops, ops_server, run.id)
    out = deployed_run["out"]
    recorded = json.loads((out / "run.json").read_text())["stages"]
    metrics = json.loads((out / "metrics.json").read_text())
    rewrites = pl.read_parquet(recorded["rewrite"]["outputs"]["rewrites"]["path"])
    shots: dict[str, Path] = {}

    with ops.client_for(ops_server) as client:
        # this run's artifacts: keys are global, and other tests of the session (the Ray run) publish the same ones
        latest = {}
        for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(ARTIFACTS)))):
            if a.flow_run_id not in (run.id, sub.id):
                continue
            if a.key not in latest or a.created > latest[a.key].created:
                latest[a.key] = a
    assert set(latest) == set(ARTIFACTS)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)  # a loaded 2-core machine renders slowly

            def visit(path: str, expect: str, shot: str | None = None) -> str:
                page.goto(base + path)
                page.get_by_text(expect, exact=False).first.wait_for()
                page.wait_for_load_state("networkidle")
                if shot:
                    shots[shot] = tmp_path / f"ui-{shot}.png"
                    page.screenshot(path=str(shots[shot]))
                return page.inner_text("body")

            def tab(name: str, expect: str) -> str:
                page.get_by_text(name, exact=True).first.click()
                page.get_by_text(expect, exact=False).first.wait_for()
                return page.inner_text("body")

            # the deployment's flow run: completed, its parameters (preset, overrides)
            text = visit(f"/runs/flow-run/{run.id}", run.name, "pipeline-run")
            assert "Completed" in text and "pipeline" in text
            assert "teacher.teachers" in tab("Parameters", "overrides")

            # the stage subflow: its graph with every stage task and its artifacts, one task run per stage
            text = visit(f"/runs/flow-run/{sub.id}", sub.name, "stage-subflow")
            assert "6 Task runs" in text and "disco-pipeline" in text
            listed = tab("Task Runs", "evaluate-")
            assert all(f"{stage}-" in listed for stage in STAGES)

            # the metrics table: every system of metrics.json with its RR@10, and the run named
            text = visit(f"/artifacts/artifact/{latest['evaluate-metrics'].id}", "RR@10", "metrics-table")
            for system, values in metrics["systems"].items():
                assert system in text and str(values["RR@10"]) in text, system
            assert f"out {out}" in text and "preset demo" in text

            # the loss curve: a rendered image
            visit(f"/artifacts/artifact/{latest['distill-loss-curve'].id}", "loss curve", "loss-curve")
            img = page.locator("img[src^='data:image/png']").first
            img.wait_for()
            assert img.evaluate("(i) => i.naturalWidth") > 100

            # rewrite samples: the human rewrites of the run's rewrites.parquet
            text = visit(f"/artifacts/artifact/{latest['rewrite-samples'].id}", "sample rewrites", "rewrite-samples")
            human = set(rewrites.filter(pl.col("teacher") == "human")["rewrite"])
            assert sum(h in text for h in human) >= 3

            # teacher scores: the human teacher's run and the fused one
            text = visit(f"/artifacts/artifact/{latest['teacher-scores'].id}", "top1_score_median", "teacher-scores")
            assert "human" in text and "fused" in text
        finally:
            browser.close()
    for shot in shots.values():
        assert shot.stat().st_size > 10_000
    if os.environ.get("DISCO_SCREENSHOTS"):
        for name, shot in shots.items():
            shutil.copy(shot, Path(os.environ["DISCO_SCREENSHOTS"]) / shot.name)
