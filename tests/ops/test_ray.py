"""``disco run --runner ray`` on a local 2-worker Ray cluster, as a user runs it (the CLI in its own process),
against ``disco run`` of the same configuration in one process: LLM rewriting (the real SmolLM2 rewriter), corpus
encoding and teacher retrieval run shard by shard as Prefect tasks on the cluster, and the outputs are the same:
stage keys up to the index, rewrites, document vectors, Lucene collection, teacher runs and metrics. No process of
the Ray run (raylet, gcs_server, workers) outlives it.

Both runs report to the session's real Prefect server (conftest.py), which lists the shard task runs. Each CLI runs
in a fresh process, so Ray starts there before any JVM (the order tasks/parallel.py explains: under pytest, with
the JVM already running in the test process, Ray's crash handlers killed Lucene with a segmentation fault).

Settings kept small (about 2 minutes on an idle 2-core machine): 4 conversations (23 turns, 39 passages), the human
and LLM teachers, LLM prompts of 300 history characters and 16 new tokens, two turns per generate call, and shards
of 16 turns (rewriting), 10 passages (encoding) and 8 turns (teacher retrieval). Skipped without prefect-ray
(pip: .[ray]).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import polars as pl
import psutil
import pyarrow.parquet as pq
import pytest

from core.proc import stop_group

pytestmark = pytest.mark.slow

MARK = "DISCO_TEST_RAY_RUN"  # set in the Ray run's environment: every process it starts inherits it
TURNS, PARTS_TURNS = 23, 16  # turns of small_demo_slice; turns per rewrite shard (1 part of 8 batches of 2)


def _overrides(ops) -> list[str]:
    return [*ops.FAST, 'teacher.systems=["human", "llm"]', "index.shard_size=10", "teacher.shard_turns=8",
            "rewrite.batch_size=2", "rewrite.shard_parts=1", "rewrite.max_history_chars=300",
            "rewrite.max_new_tokens=16", "rewrite.torch_threads=1"]


def _marked(mark: str) -> list:
    """Live processes whose environment holds ``MARK=mark``."""
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get(MARK) == mark:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _kill(procs: list) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _disco_run(env: dict, args: list[str], log: Path, timeout: float, mark: str | None = None) -> tuple[str, set]:
    """``disco run ARGS`` in its own process group; its output, and the command lines of the marked processes seen
    while it ran. Stopped for sure (with every marked process) when it overruns ``timeout``."""
    env = {**env, **({MARK: mark} if mark else {})}
    seen: set[str] = set()
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "disco.cli", "run", "demo", *args], env=env, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
        done = threading.Event()

        def watch() -> None:
            while mark and not done.wait(1.0):
                seen.update(" ".join(q.info["cmdline"] or [q.info["name"]]) for q in _marked(mark))

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(p, 20)
            rc = None
        finally:
            done.set()
            t.join()
            if rc is None and mark:
                _kill(_marked(mark))
    out = log.read_text(errors="replace")
    assert rc == 0, f"disco run {' '.join(args)} {'timed out' if rc is None else f'exited {rc}'}:\n{out[-6000:]}"
    return out, seen


def _stages(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["stages"]


def _out(stages: dict, stage: str, name: str) -> Path:
    return Path(stages[stage]["outputs"][name]["path"])


def _task_names(ops, server: dict, out: Path) -> list[str]:
    """Names of the task runs of the pipeline flow run that wrote ``out``."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with ops.client_for(server) as client:
        runs = [r for r in client.read_flow_runs(limit=200) if r.parameters.get("out") == str(out)]
        assert len(runs) == 1, f"{len(runs)} flow runs wrote {out}"
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])),
                                      limit=200)
    return [t.name for t in tasks]


def test_ray_runner_gives_the_single_process_outputs(ops, ops_server, small_demo_slice, tmp_path):
    if importlib.util.find_spec("prefect_ray") is None:  # (found, not imported: Ray runs in the commands only)
        pytest.skip("prefect-ray is not installed (pip: .[ray])")
    # Ray's temporary folder (sessions, logs, sockets): this test's own, and short (unix socket paths are limited)
    ray_tmp = Path(tempfile.mkdtemp(prefix="dray-", dir="/tmp"))
    env = {**ops_server["env"], "RAY_TMPDIR": str(ray_tmp)}
    args = ["--data", str(small_demo_slice), *[a for o in _overrides(ops) for a in ("--set", o)]]
    single_out, ray_out, mark = tmp_path / "single", tmp_path / "ray", uuid.uuid4().hex
    try:
        _disco_run(env, [*args, "--out", str(single_out)], tmp_path / "single.log", 900)
        log, seen = _disco_run(env, [*args, "--out", str(ray_out), "--runner", "ray", "--set", "runner.workers=2"],
                               tmp_path / "ray.log", 900, mark)
        # nothing of the Ray run is left once the CLI has returned (Ray stops its processes at ray.shutdown)
        deadline = time.monotonic() + 30
        while (left := _marked(mark)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, f"processes of the Ray run outlived it: {[(p.pid, p.info['cmdline']) for p in left]}"
    finally:
        _kill(_marked(mark))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # ... and it did start a cluster: its head processes and workers were seen while it ran
    for what in ("/raylet ", "/gcs_server ", "ray::"):
        assert any(what in c for c in seen), (what, sorted(seen))
    assert "Started a local Ray instance" in log and "(shard pid=" in log

    single, ray = _stages(single_out), _stages(ray_out)
    # the runner is read by no stage: the same keys up to the index. (Downstream keys differ between any two
    # builds, Ray or not: they hash the index stage's outputs, and a Lucene index's files carry per-build ids.)
    assert {k: ray[k]["key"] for k in ("ingest", "rewrite", "index")} == \
        {k: single[k]["key"] for k in ("ingest", "rewrite", "index")}
    # identical rewrites: the LLM's too, generated in two shards on the cluster
    rewrites = pl.read_parquet(_out(ray, "rewrite", "rewrites"))
    assert rewrites.equals(pl.read_parquet(_out(single, "rewrite", "rewrites")))
    assert rewrites.filter(pl.col("teacher") == "llm").height == TURNS
    shard_dirs = sorted(p.name for p in (ray_out / "work").glob("rewrite-llm-*/shard-*"))
    assert shard_dirs == ["shard-0000000-0000016", "shard-0000016-0000023"], shard_dirs
    # identical document vectors and impact collection, file by file
    for name in ("doc_vectors", "collection"):
        assert ray["index"]["outputs"][name]["sha256"] == single["index"]["outputs"][name]["sha256"]
    assert pq.read_table(_out(ray, "index", "doc_vectors")).equals(pq.read_table(_out(single, "index", "doc_vectors")))
    files = sorted(p.name for p in _out(single, "index", "collection").iterdir())
    assert len(files) >= 3 and files == sorted(p.name for p in _out(ray, "index", "collection").iterdir())
    for f in files:
        assert (_out(ray, "index", "collection") / f).read_bytes() == (_out(single, "index", "collection") / f).read_bytes()
    # identical teacher runs and metrics
    assert pl.read_parquet(_out(ray, "teacher", "runs")).equals(pl.read_parquet(_out(single, "teacher", "runs")))
    systems = json.loads((ray_out / "metrics.json").read_text())["systems"]
    assert "rewrite:llm" in systems
    assert systems == json.loads((single_out / "metrics.json").read_text())["systems"]

    # the shards ran as Prefect tasks on the cluster, one task per shard; none in the single-process run
    names = _task_names(ops, ops_server, ray_out)
    n_docs = pq.read_metadata(_out(single, "index", "doc_vectors")).num_rows
    assert sum(n.startswith("index-encode-") for n in names) == math.ceil(n_docs / 10)
    assert sum(n.startswith("rewrite-llm-") for n in names) == math.ceil(TURNS / PARTS_TURNS)
    assert sum(n.startswith("teacher-retrieve-") for n in names) >= 4  # 2 teachers, >= 2 shards of 8 turns each
    assert not [n for n in _task_names(ops, ops_server, single_out)
                if n.startswith(("index-encode-", "rewrite-llm-", "teacher-retrieve-"))]
