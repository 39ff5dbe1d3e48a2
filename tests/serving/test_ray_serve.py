"""``disco serve RUN --ray --replicas 2`` on a local Ray cluster, as an operator runs it (the CLI in its own
process): both replicas answer, every test turn gets the single process's ranking (the evaluate stage's run), the
page and the limits are the same, SIGTERM stops it with "stopped" and exit 0, and no process of the cluster
(raylet, GCS, Serve's controller and proxy, the replicas) outlives it. About a minute on 2 idle cores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from core.proc import stop_group
from tests.serving.conftest import free_port

pytestmark = pytest.mark.slow

MARK = "DISCO_TEST_RAY_SERVE"  # in the CLI's environment: every process of its cluster inherits it


def _marked(mark: str) -> list:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get(MARK) == mark:
                found.append(p)
    return found


def _answered(log: Path) -> set[str]:
    """The process ids of the replicas that logged an answered search."""
    return set(re.findall(r"\(ServeReplica:disco:DiscoSearch pid=(\d+)\).*POST /search\S* 200", log.read_text()))


def _trec(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    return run


def test_two_ray_serve_replicas_answer_as_the_single_process(trained_run, output, searcher, test_turns, tmp_path):
    if importlib.util.find_spec("ray.serve") is None or importlib.util.find_spec("grpc_reflection") is None:
        pytest.skip("Ray Serve is not installed (pip: .[ray])")
    ray_tmp = Path(tempfile.mkdtemp(prefix="dsrv-", dir="/tmp"))  # short: unix socket paths are limited
    mark, port, log = uuid.uuid4().hex, free_port(), tmp_path / "serve.log"
    env = {**os.environ, MARK: mark, "RAY_TMPDIR": str(ray_tmp)}
    disco = str(Path(sys.executable).with_name("disco"))
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as f:
        proc = subprocess.Popen([disco, "serve", str(trained_run), "--ray", "--replicas", "2", "--port", str(port)],
                                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 240, set()
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            seen.update(" ".join(p.info["cmdline"] or []) for p in _marked(mark))
            time.sleep(1)
        seen.update(" ".join(p.info["cmdline"] or []) for p in _marked(mark))
        assert any("raylet" in c for c in seen) and any("ServeReplica" in c for c in seen), seen

        evaluated = _trec(output("evaluate", "runs") / "disco.trec")
        checked = 0
        with httpx.Client(timeout=120) as client:
            for t in test_turns:
                r = client.post(url + "/search", json={"conversation": t["conversation"], "k": 100})
                assert r.status_code == 200, r.text
                got = [(h["id"], h["score"]) for h in r.json()["results"]]
                assert got == [(h.id, h.score) for h in searcher.search(t["conversation"], k=100).results]
                if t["turn_id"] in evaluated:  # the evaluate stage's top 100, scores to its precision
                    run = evaluated[t["turn_id"]]
                    assert all(run.get(d, -1) == pytest.approx(s, abs=2e-4) for d, s in got), t["turn_id"]
                    assert not {d for d, s in run.items() if s > got[-1][1] + 2e-4} - {d for d, _ in got}
                    checked += 1
            assert checked >= 1 and checked == len(set(evaluated) & {t["turn_id"] for t in test_turns})
            batch = client.post(url + "/search/batch", json={"conversations": [t["conversation"] for t in
                                                                               test_turns[:4]], "k": 5})
            assert [[h["id"] for h in r["results"]] for r in batch.json()["responses"]] == \
                   [[h.id for h in searcher.search(t["conversation"], k=5).results] for t in test_turns[:4]]
            too_many = client.post(url + "/search", json={"conversation": test_turns[0]["conversation"], "k": 101})
            assert too_many.status_code == 422 and too_many.json() == {
                "detail": "k: Input should be less than or equal to 100"}
            page = client.get(url + "/")
            assert page.status_code == 200 and 'id="question"' in page.text
            for i in range(60):  # both replicas answer (each prints its access log): Serve spreads the requests
                if len(_answered(log)) == 2:
                    break
                time.sleep(0.2)
                assert client.post(url + "/search", json={"conversation": test_turns[i % len(test_turns)][
                    "conversation"]}).status_code == 200
        assert len(_answered(log)) == 2, log.read_text()[-3000:]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()
        assert "disco serve: stopped (SIGTERM)" in log.read_text()
        deadline = time.monotonic() + 30
        while (left := _marked(mark)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, [(p.pid, p.info["cmdline"]) for p in left]
    finally:
        if proc.poll() is None:
            stop_group(proc, 20)
        for p in _marked(mark):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
