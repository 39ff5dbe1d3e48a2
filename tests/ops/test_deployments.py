"""The deployments as a team uses them, on a real Prefect server: ``disco deploy`` registers prefect.yaml's
deployments with their schedule and serves the ``pipeline`` run of the demo slice (conftest.py); the stage keys
equal those of ``disco run`` with the same preset and overrides; then the README's route (a ``process`` work pool,
``prefect deploy --all``, ``prefect worker start --pool disco``) reruns one stage, reusing the cached upstream
stages.

About 3-4 minutes here (two Prefect processes starting, one pipeline run, one stage run in a worker): the
end-to-end proof that the documented routes work, marked slow so that `make test-fast` stays fast (`make test` and
CI run it).
"""

from __future__ import annotations

import json
import sys
import time

import pytest
import yaml

from pathlib import Path

pytestmark = pytest.mark.slow

SPEC = {d["name"]: d for d in yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())[
    "deployments"]}


def _check_schedule(deployment) -> None:
    written = SPEC["pipeline"]["schedules"][0]
    assert len(deployment.schedules) == 1
    schedule = deployment.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == (written["cron"], written["timezone"])


def test_deployments_run_the_cli_config_and_rerun_one_stage(ops, ops_server, deployed_run, demo_slice):
    # disco deploy registered every deployment of prefect.yaml, with its defaults and the schedule as written
    served = {d.name: d for d in deployed_run["deployments"]}
    assert set(served) == set(SPEC)
    _check_schedule(served["pipeline"])
    assert served["pipeline"].parameters == SPEC["pipeline"]["parameters"] == {"preset": "demo",
                                                                              "out": "runs/scheduled"}
    form = served["teacher"].parameter_openapi_schema["properties"]
    assert {"preset", "data", "eval_data", "overrides", "out", "refresh"} <= set(form)
    assert form["overrides"]["anyOf"][0]["type"] == "array"  # typed: the UI shows a list field

    # the pipeline deployment ran the demo slice as `disco run demo --data SLICE --set ...` does
    out = deployed_run["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"last_turn", "rewrite:human", "disco"} <= set(metrics["systems"])
    recorded = json.loads((out / "run.json").read_text())["stages"]
    from stages.config import load
    from stages.runner import run_pipeline

    cli_config = load("demo", [str(demo_slice)], ops.FAST)
    assert json.loads((out / "run.json").read_text())["config"] == cli_config.model_dump(mode="json")
    plain = run_pipeline(cli_config, out)  # no Prefect: every folder of the same keys is found, nothing recomputed
    assert {k: m.key for k, m in plain.items()} == {k: m["key"] for k, m in recorded.items()}
    assert all(m.stats["stage_seconds"] == recorded[k]["stats"]["stage_seconds"] for k, m in plain.items())

    # the README's route: a process work pool, `prefect deploy --all`, a worker; then a one-stage rerun
    deployed_run["stop_serving"]()
    procs = ops_server["procs"]
    prefect = [sys.executable, "-m", "prefect"]
    procs.run([*prefect, "work-pool", "create", "disco", "--type", "process", "--overwrite"])
    procs.run([*prefect, "--no-prompt", "deploy", "--all"], timeout=300)
    with ops.client_for(ops_server) as client:
        teacher = client.read_deployment_by_name("teacher/teacher")
        pipeline = client.read_deployment_by_name("pipeline/pipeline")
    assert teacher.work_pool_name == pipeline.work_pool_name == "disco"
    _check_schedule(pipeline)
    procs.start("worker", [*prefect, "worker", "start", "--pool", "disco"])
    started = time.monotonic()
    run = ops.run_and_wait(ops_server, "teacher/teacher", {**deployed_run["parameters"], "refresh": True})
    assert run.state.is_completed(), f"{run.state}\n{procs.log('worker')}"
    states = ops.stage_states(ops_server, run.id, 5)
    assert states == {"ingest": "Cached", "rewriter": "Cached", "rewrite": "Cached", "index": "Cached",
                      "teacher": "Completed"}, states
    print(f"teacher rerun through the worker: {time.monotonic() - started:.0f} s")
    procs.stop("worker")
