"""One trained run shared by the serving tests: the demo slice (tests/conftest.py) through the real pipeline
(human-rewrite teacher only: the search side does not depend on which teacher trained the student).

Set ``DISCO_TEST_RUN`` to the folder of a finished ``disco run demo`` to reuse it instead (faster locally).
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from core.proc import stop_group
from core.run_record import RunRecord

from stages.config import apply_overrides, preset


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, request, demo_slice) -> Path:
    """A finished run folder (run.json, student, Lucene index, corpus, evaluate runs)."""
    given = os.environ.get("DISCO_TEST_RUN")
    if given and (Path(given) / "run.json").exists():
        return Path(given).resolve()
    request.getfixturevalue("prefect_api")
    from flows.pipeline import pipeline

    root = tmp_path_factory.mktemp("serving-run")
    cfg = apply_overrides(preset("demo"), [
        f"data.path={demo_slice}", "data.split.test_fraction=0.25", 'teacher.systems=["human"]', "distill.learn_from=human",
        "distill.epochs=1", "distill.steps=null", "distill.n_negatives=4", "distill.negative_window=[2, 100]",
        "evaluate.latency_queries=1", "distill.search.input=[]"])
    pipeline(cfg, str(root / "run"))
    return root / "run"


def stage_output(run: Path, stage: str, name: str) -> Path:
    return RunRecord.read(run).output(stage, name)


@pytest.fixture(scope="session")
def output(trained_run):
    """``output(stage, name)``: the path of a stage output of the trained run."""
    return lambda stage, name: stage_output(trained_run, stage, name)


@pytest.fixture(scope="session")
def searcher(trained_run):
    from disco.serving.search import Searcher

    s = Searcher.open(trained_run)
    yield s
    s.close()


@pytest.fixture(scope="session")
def test_turns(trained_run) -> list[dict]:
    """The evaluate stage's turns as API conversations, with their turn ids."""
    turns = pl.read_parquet(stage_output(trained_run, "ingest", "turns")).filter(pl.col("split") == "test")
    out = []
    for t in turns.to_dicts():
        conv = [{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
        out.append({"turn_id": t["turn_id"], "conversation": conv + [{"speaker": "user", "text": t["question"]}]})
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(run: Path, log: Path, *extra: str):
    """`disco serve RUN` as a process (its own session; stdout and stderr to ``log``), once /health answers;
    returns (process, base URL)."""
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    disco = Path(sys.executable).with_name("disco")
    with open(log, "w") as f:
        proc = subprocess.Popen([str(disco), "serve", str(run), "--port", str(port), *extra], stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"disco serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_group(proc, 20)
            raise RuntimeError(f"disco serve did not start:\n{log.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def serve_log(tmp_path_factory) -> Path:
    """The shared `disco serve`'s output (its access log among it)."""
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="session")
def server(trained_run, serve_log):
    """A real `disco serve` process (uvicorn on loopback) over the trained run; yields its base URL."""
    proc, url = start_serve(trained_run, serve_log)
    try:
        yield url
    finally:
        stop_group(proc, 20)


@pytest.fixture(scope="session")
def serving(trained_run):
    """``start_serve`` for the tests that stop a service themselves."""
    return lambda log, *extra: start_serve(trained_run, log, *extra)
