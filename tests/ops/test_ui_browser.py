"""The Prefect UI as a person sees it, in Debian's headless chromium driven by Playwright: the ``pipeline``
deployment's run of the demo slice (conftest.py), its stage subflow with the stage task runs, and the artifact
pages (metrics table, loss curve, rewrite samples, teacher scores), each checked against the run's own files; then
a one-stage rerun a person starts in the UI (the ``teacher`` deployment's Run -> Custom run form, filled and
submitted in the browser), run by ``disco deploy`` with the upstream stages from cache.

`make test` installs chromium first (`make browser`: apt-get, as root); without it this test is skipped.
Set DISCO_SCREENSHOTS=docs/img to refresh the README's screenshots (docs/img/ui-*.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import polars as pl
import pytest

from stages.graph import NAMES, upstream_of

pytestmark = pytest.mark.slow  # a Prefect server, the served demo run and a browser: minutes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STAGES = NAMES  # every stage of the pipeline, in order
ARTIFACTS = ("evaluate-metrics", "distill-loss-curve", "rewrite-samples", "teacher-scores")


def _subflow(ops, server, flow_run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentTaskRunId

    with ops.client_for(server) as client:
        parent = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        [sub] = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in parent])))
        return sub


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright (skips when either is missing)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: run `make browser` (apt-get install chromium, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip: .[test])")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)  # a loaded 2-core machine renders slowly
    return page


def _publish(shots: dict[str, Path]) -> None:
    for shot in shots.values():
        assert shot.stat().st_size > 10_000
    if os.environ.get("DISCO_SCREENSHOTS"):
        for shot in shots.values():
            shutil.copy(shot, Path(os.environ["DISCO_SCREENSHOTS"]) / shot.name)


def test_pipeline_run_subflow_and_artifacts_in_the_browser(ops, ops_server, deployed_run, browser, tmp_path):
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

    page = _page(browser)
    try:
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
        assert "teacher.systems" in tab("Parameters", "overrides")

        # the stage subflow: its graph with every stage task and its artifacts, one task run per stage
        text = visit(f"/runs/flow-run/{sub.id}", sub.name, "stage-subflow")
        assert f"{len(STAGES)} Task runs" in text and "disco-pipeline" in text
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
        page.close()
    _publish(shots)


def test_one_stage_rerun_from_the_custom_run_form(ops, ops_server, serving, browser, tmp_path):
    """A person reruns the teacher stage: the teacher deployment's page, Run -> Custom run, the parameters form
    filled as the pipeline run's (a list item per data folder and per override) with refresh on, Submit; the served
    run recomputes teacher only and its page shows it Completed."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    base = ops_server["url"].removesuffix("/api")
    procs = ops_server["procs"]
    wanted = {**serving["parameters"], "refresh": True}
    message = f"teacher rerun from the browser test {uuid.uuid4().hex[:8]}"  # the form's Message: marks this run
    with ops.client_for(ops_server) as client:
        teacher = client.read_deployment_by_name("teacher/teacher")
        of_teacher = DeploymentFilter(id=DeploymentFilterId(any_=[teacher.id]))
        before = {r.id for r in client.read_flow_runs(deployment_filter=of_teacher)}
    shots: dict[str, Path] = {}
    page = _page(browser)
    try:
        page.goto(f"{base}/deployments/deployment/{teacher.id}")
        page.get_by_role("button", name="Run", exact=True).click()  # (the sidebar's links are buttons too)
        page.get_by_text("Custom run", exact=True).click()
        page.get_by_role("button", name="Submit", exact=True).wait_for()
        page.wait_for_load_state("networkidle")

        def field(name: str):
            label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{name} \(Optional\)$"))
            return page.locator(".schema-form-property", has=label).first

        def fill_list(name: str, values: list[str]) -> None:
            f = field(name)
            f.get_by_role("button", name="list", exact=True).click()  # list[str] | None: the list variant
            for i, value in enumerate(values):
                f.get_by_role("button", name="Add item").click()
                f.locator(".p-draggable-list__item textarea").nth(i).fill(value)

        field("preset").locator("textarea").fill(wanted["preset"])
        fill_list("data", wanted["data"])
        fill_list("overrides", wanted["overrides"])
        field("out").locator("textarea").fill(wanted["out"])
        field("refresh").locator("[role=switch], input").first.click()
        page.get_by_text("Additional Options", exact=True).click()
        note = page.get_by_placeholder("Created from the Prefect UI")
        note.fill(message)
        # the filled form down to the message: the page scrolls inside its layout, so a viewport that holds it all
        page.set_viewport_size({"width": 1400, "height": page.evaluate(
            "Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")})
        page.evaluate("document.querySelectorAll('*').forEach(e => { e.scrollTop = 0 })")
        box = note.bounding_box()
        shots["custom-run-form"] = tmp_path / "ui-custom-run-form.png"
        page.screenshot(path=str(shots["custom-run-form"]),
                        clip={"x": 0, "y": 0, "width": 1400, "height": box["y"] + box["height"] + 16})
        page.set_viewport_size({"width": 1400, "height": 1000})
        with page.expect_response(lambda r: r.url.endswith(f"/deployments/{teacher.id}/create_flow_run")) as made:
            page.get_by_role("button", name="Submit", exact=True).click()
        assert made.value.status == 201, made.value.text()
        run_id = uuid.UUID(made.value.json()["id"])  # the run the browser's own request created

        # the served run (`disco deploy`), followed through the API
        with ops.client_for(ops_server) as client:
            def final():
                r = client.read_flow_run(run_id)
                return r if r.state is not None and r.state.is_final() else None

            run = ops.wait_for(final, "final state of the teacher run from the UI", 900, procs, "deploy")
            first = client.read_flow_run_states(run_id)[0]
            after = {r.id for r in client.read_flow_runs(deployment_filter=of_teacher)}
        assert run.deployment_id == teacher.id and after - before == {run_id}  # no other run: none by the test
        assert (first.type.value, first.message) == ("SCHEDULED", message)
        assert run.parameters == {**wanted, "eval_data": None, "eval_format": None}, run.parameters
        assert run.state.is_completed(), f"{run.state}\n{procs.log('deploy')}"
        upstream = upstream_of("teacher") - {"teacher"}  # from cache: ingest, rewrite, index, the rewriter
        states = ops.stage_states(ops_server, run.id, len(upstream) + 1)
        assert states == {**dict.fromkeys(upstream, "Cached"), "teacher": "Completed"}, states

        # run by the served deployments (its flow run process writes to `disco deploy`'s output), not a worker
        ops.wait_for(lambda: f"'{run.name}'" in procs.log("deploy"), "the run in `disco deploy`'s output", 60)

        # its page in the UI: Completed, the teacher stage's log line, the parameters the form set
        page.goto(f"{base}/runs/flow-run/{run_id}")
        page.get_by_text(run.name, exact=False).first.wait_for()
        page.get_by_text("Finished in state Completed", exact=False).first.wait_for()
        page.wait_for_load_state("networkidle")
        shots["custom-run"] = tmp_path / "ui-custom-run.png"
        page.screenshot(path=str(shots["custom-run"]))
        text = page.inner_text("body")
        assert "Completed" in text and f"teacher: preset=demo, data=['{wanted['data'][0]}']" in text
        page.get_by_text("Parameters", exact=True).first.click()
        page.get_by_text("refresh", exact=False).first.wait_for()
        assert wanted["out"] in page.inner_text("body")
    finally:
        page.close()
    _publish(shots)
