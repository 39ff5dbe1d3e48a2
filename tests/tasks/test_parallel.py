"""tasks/parallel.py's task runner: a new local Ray cluster unless an address is given, and no Ray in a process
whose JVM already runs (Ray's crash handlers would replace the JVM's: a segmentation fault in Lucene). The run on a
real cluster is tests/ops/test_ray.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages.config import RunnerConfig
from tasks.parallel import task_runner

ROOT = Path(__file__).resolve().parents[2]


def _fresh_process(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter with this checkout's code (the test session may already run a JVM)."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_local_runner_has_no_task_runner():
    assert task_runner(RunnerConfig()) is None


def test_ray_runner_starts_a_new_local_cluster_or_joins_the_given_one():
    """In a fresh process: in the test session an earlier test may already have started the JVM here, and the
    runner is then refused (the next test)."""
    pytest.importorskip("prefect_ray", reason="prefect-ray is not installed (pip: .[ray])")
    code = ("import json\n"
            "from stages.config import RunnerConfig\n"
            "from tasks.parallel import task_runner\n"
            "local = task_runner(RunnerConfig(kind='ray', workers=3))\n"
            "remote = task_runner(RunnerConfig(kind='ray', address='ray://head:10001'))\n"
            "print(json.dumps({'local': local.init_kwargs, 'remote_address': remote.address,\n"
            "                  'remote': remote.init_kwargs}))\n")
    r = _fresh_process(code)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # "local": a new cluster even where RAY_ADDRESS is set or `ray start` left one (ray.init() would join it)
    assert got["local"]["address"] == "local" and got["local"]["num_cpus"] == 3
    assert got["local"]["runtime_env"]["env_vars"]["PYTHONPATH"] == str(ROOT)
    assert got["remote_address"] == "ray://head:10001" and "num_cpus" not in got["remote"]


def test_ray_runner_is_refused_where_the_jvm_already_runs():
    """In a fresh process (the JVM cannot be stopped once started): start it as a search would, then ask for Ray."""
    pytest.importorskip("prefect_ray", reason="prefect-ray is not installed (pip: .[ray])")
    code = ("from retrieval.index.java import setup_java\n"
            "from core.errors import DiscoError\n"
            "from stages.config import RunnerConfig\n"
            "from tasks.parallel import task_runner\n"
            "setup_java()\n"
            "import jnius\n"
            "assert jnius.autoclass('java.lang.System').getProperty('java.version')\n"
            "try:\n"
            "    task_runner(RunnerConfig(kind='ray'))\n"
            "except DiscoError as e:\n"
            "    print('refused:', e)\n")
    r = _fresh_process(code)
    assert "refused: runner.kind=ray: the JVM (Pyserini) already runs in this process" in r.stdout, r.stdout
