"""The Prefect server `disco` commands share (flows/server.py): started once, reused, gone after its idle time.

Real processes throughout: two `disco run --stage ingest` commands without PREFECT_API_URL in a fresh Prefect home
(the first starts the server, the second finds it and is served from cache), two commands asking at once (one
server), and the server stopping by itself once no command has held its lease for the idle time.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.proc import alive

from flows.server import LEASE, RECORD, running

ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 4


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(ROOT), DISCO_PREFECT_SERVER_IDLE=str(IDLE_S),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_COLOR="1")
    return env


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_commands_share_one_server_that_stops_when_idle(tmp_path, demo_slice):
    home, out = tmp_path / "home", tmp_path / "out"
    run = [sys.executable, "-m", "disco.cli", "run", "demo", "--data", str(demo_slice), "--out", str(out),
           "--stage", "ingest"]
    pids: list[int] = []
    home.mkdir()
    lease = os.open(home / LEASE, os.O_RDWR | os.O_CREAT)
    try:
        # this test holds a lease until both commands ran (the idle time here is shorter than a command's start-up
        # on a loaded machine)
        fcntl.flock(lease, fcntl.LOCK_SH)
        first = subprocess.run(run, cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Starting temporary server" not in first.stdout + first.stderr  # not Prefect's per-process one
        rec = json.loads((home / RECORD).read_text())
        pids.append(rec["pid"])
        assert alive(rec["pid"]), "the server went with the command that started it"

        second = subprocess.run(run, cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Cached" in second.stdout + second.stderr
        assert json.loads((home / RECORD).read_text())["pid"] == rec["pid"], "the second command started another"
        os.close(lease)
        lease = None

        deadline = time.monotonic() + IDLE_S + 30
        while alive(rec["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(rec["pid"]), f"the server outlived its idle time ({IDLE_S} s) by 30 s"
        assert not (home / RECORD).exists() and running(home) is None

        # two commands at once: the start lock lets one start the server, the other finds it
        probe = [sys.executable, "-c", "from flows.server import shared_server\n"
                 "with shared_server() as url: print(url)"]
        procs = [subprocess.Popen(probe, cwd=ROOT, env=_env(home), stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        urls = {p.communicate(timeout=600)[0].strip() for p in procs}
        pids.append(json.loads((home / RECORD).read_text())["pid"])
        assert len(urls) == 1 and urls.pop().startswith("http://127.0.0.1:"), urls
    finally:
        if lease is not None:
            os.close(lease)
        for pid in pids:
            _kill(pid)


def test_idle_zero_or_an_api_url_leaves_prefect_alone(tmp_path, monkeypatch):
    from flows.server import shared_server

    monkeypatch.setenv("DISCO_PREFECT_SERVER_IDLE", "0")
    with shared_server(tmp_path) as url:
        assert url is None
    assert not (tmp_path / RECORD).exists()
    monkeypatch.setenv("DISCO_PREFECT_SERVER_IDLE", "60")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), shared_server(tmp_path) as url:
        assert url is None
    assert not (tmp_path / RECORD).exists()
    monkeypatch.setenv("DISCO_PREFECT_SERVER_IDLE", "soon")
    with pytest.raises(Exception, match="DISCO_PREFECT_SERVER_IDLE='soon' is not a number"):
        with shared_server(tmp_path):
            pass
