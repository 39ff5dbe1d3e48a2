"""A real Prefect server for the operations tests, the deployments served by ``disco deploy``, and one pipeline run
of the demo slice through the ``pipeline`` deployment (shared by the deployment, database and browser tests).

The server's database is PostgreSQL when ``scripts/postgres.sh`` can start one (Debian's ``postgresql``; ``make
postgres`` installs it), else SQLite; ``DISCO_TEST_DB=sqlite`` forces SQLite. Every process started here runs in
its own process group and is ended for sure (SIGTERM, then SIGKILL), since a Prefect worker does not always stop
on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core.proc import stop_group

ROOT = Path(__file__).resolve().parents[2]
# the demo preset, short: the human teacher only (no LLM), one short epoch, one latency query; small shards
# (several per stage), so test_ray.py compares a Ray run with this one shard by shard
FAST = ["data.split.test_fraction=0.25", 'teacher.systems=["human"]', "distill.learn_from=human", "distill.epochs=1", "distill.steps=null",
        "distill.n_negatives=4", "distill.negative_window=[2, 100]", "evaluate.latency_queries=1",
        "index.shard_size=20", "teacher.shard_turns=16", "distill.search.input=[]"]  # the dev search: tests/models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Subprocesses of one test session, each with a log file, all ended at teardown."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env, self.procs = logs, env, {}

    def start(self, name: str, cmd: list[str], cwd: Path = ROOT) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        p = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def run(self, cmd: list[str], timeout: float = 180) -> str:
        r = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-5000:]

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        stop_group(p, 20)

    def stop_all(self) -> None:
        for name in list(self.procs)[::-1]:
            self.stop(name)


def wait_for(check, what: str, timeout: float, proc: Processes | None = None, name: str | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        p = proc.procs.get(name) if proc and name else None
        if p is not None and p.poll() is not None:
            raise RuntimeError(f"{name} exited {p.returncode} while waiting for {what}:\n{proc.log(name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s" + (f":\n{proc.log(name)}" if name else ""))
        time.sleep(0.5)


def postgres_url(folder: Path, port: int) -> str | None:
    """Start a PostgreSQL cluster in ``folder`` with the project's script; None when PostgreSQL is unavailable."""
    if os.environ.get("DISCO_TEST_DB", "postgres") == "sqlite":
        return None
    r = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start", str(folder), str(port)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return None
    return r.stdout.strip().splitlines()[-1].partition("=")[2]


@pytest.fixture(scope="session")
def ops_server(tmp_path_factory):
    """A real ``prefect server start`` (PostgreSQL or SQLite); yields a dict: url, db_url, env, procs."""
    home = tmp_path_factory.mktemp("ops-prefect-home")
    pg_dir = Path(tempfile.mkdtemp(prefix="disco-pg-"))  # under /tmp: readable by the `postgres` user
    db_url = postgres_url(pg_dir, free_port())
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=url, PREFECT_UI_API_URL=url, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"), PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false", PREFECT_LOGGING_LEVEL="INFO", PWD=str(ROOT))
    if db_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = db_url
    procs = Processes(home, env)
    try:
        procs.start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)])
        import httpx

        def healthy() -> bool:
            try:
                return httpx.get(url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, "healthy Prefect server", 180, procs, "server")
        yield {"url": url, "db_url": db_url, "env": env, "procs": procs, "pg_dir": pg_dir}
    finally:
        procs.stop_all()
        if db_url:
            subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", str(pg_dir)],
                           capture_output=True, timeout=120)
        shutil.rmtree(pg_dir, ignore_errors=True)


def client_for(server: dict):
    """A synchronous Prefect client of ``server`` (inside this test process)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: server["url"]})
            self._settings.__enter__()
            self._client = SyncPrefectClient(server["url"])
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


def run_and_wait(server: dict, name: str, parameters: dict, timeout: float = 900):
    """Trigger the deployment ``name`` (``flow/deployment``) and wait for its flow run's final state."""
    with client_for(server) as client:
        d = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(d.id, parameters=parameters)

        def final():
            r = client.read_flow_run(run.id)
            return r if r.state is not None and r.state.is_final() else None

        return wait_for(final, f"final state of {name}", timeout)


def start_serving(server: dict) -> None:
    """``disco deploy`` serving prefect.yaml's deployments in the session, started again when a test stopped it;
    returns once it has registered them and polls for their runs (the line Prefect's ``serve`` prints then)."""
    procs = server["procs"]
    running = procs.procs.get("deploy")
    if running is not None and running.poll() is None:
        return
    procs.start("deploy", [sys.executable, "-m", "disco.cli", "deploy"])
    wait_for(lambda: "polling for scheduled runs" in procs.log("deploy"), "`disco deploy` serving", 240, procs,
             "deploy")


def stage_states(server: dict, flow_run_id, expected: int) -> dict[str, str]:
    """Final state names of the stage tasks run by ``flow_run_id``'s subflow, by stage (states arrive
    asynchronously: waits for ``expected`` of them)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentTaskRunId

    with client_for(server) as client:
        def subflow_tasks():
            parent_tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in parent_tasks])))
            if not subflows:
                return None
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                any_=[f.id for f in subflows])))
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            return final if len(final) >= expected else None

        runs = wait_for(subflow_tasks, f"{expected} finished stage tasks", 60)
    return {r.name.rsplit("-", 1)[0]: r.state_name for r in runs}


@pytest.fixture(scope="session")
def deployed_run(ops_server, demo_slice, tmp_path_factory):
    """``disco deploy`` serving prefect.yaml's deployments, and one finished run of the ``pipeline`` deployment
    on the demo slice (fast overrides). Yields a dict: flow_run, out, parameters, deployments (read while served),
    stop_serving (a function)."""
    procs = ops_server["procs"]
    start_serving(ops_server)

    import yaml

    expected = len(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])

    def registered():
        with client_for(ops_server) as client:
            found = client.read_deployments()
            return found if len(found) == expected else None

    deployments = wait_for(registered, f"{expected} registered deployments", 240, procs, "deploy")
    out = tmp_path_factory.mktemp("deployed") / "run"
    parameters = {"preset": "demo", "data": [str(demo_slice)], "overrides": FAST, "out": str(out)}
    flow_run = run_and_wait(ops_server, "pipeline/pipeline", parameters)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{procs.log('deploy')}"
    yield {"flow_run": flow_run, "out": out, "parameters": parameters, "deployments": deployments,
           "stop_serving": lambda: procs.stop("deploy")}
    procs.stop("deploy")


@pytest.fixture
def serving(ops_server, deployed_run):
    """``deployed_run`` with ``disco deploy`` serving again (test_deployments.py stops it for the worker route)."""
    start_serving(ops_server)
    return deployed_run


@pytest.fixture(scope="session")
def ops():
    """The helpers above, for the test modules (conftest modules are not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(FAST=FAST, ROOT=ROOT, client_for=client_for, run_and_wait=run_and_wait,
                           stage_states=stage_states, wait_for=wait_for)
