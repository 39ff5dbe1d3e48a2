"""`disco serve` as an operator meets it: a port in use is one line before anything loads; SIGTERM or Ctrl-C
finish the requests in flight, say "stopped" and exit 0; every request is one access-log line."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

DISCO = str(Path(sys.executable).with_name("disco"))


@pytest.mark.parametrize("command", [["serve", "RUN"], ["ui"]])
def test_a_port_in_use_is_one_line_before_anything_loads(command, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [tmp_path if a == "RUN" else a for a in command]  # no run there: the port is checked first
        t0 = time.monotonic()
        done = subprocess.run([DISCO, *map(str, args), "--port", str(port)], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (f"error: port {port} on 127.0.0.1 is already in use (another `disco serve`?): "
                                   "stop that service or choose another port with --port"), done.stderr
    assert done.stdout == "" and time.monotonic() - t0 < 60


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_finishes_the_requests_in_flight_and_exits_0(serving, test_turns, tmp_path, sig):
    log = tmp_path / "serve.log"
    proc, url = serving(log)
    longest = max((t["conversation"] for t in test_turns), key=len)
    body = {"conversations": [longest] * 32, "k": 100}  # one batch of 32 each, answered one after the other
    answers: list[httpx.Response] = []
    first = threading.Event()

    def client() -> None:
        answers.append(httpx.post(url + "/search/batch", json=body, timeout=300))
        first.set()

    clients = [threading.Thread(target=client) for _ in range(8)]
    try:
        for c in clients:
            c.start()
        # the signal once the first request is answered: the other seven are in flight (queued behind it), however
        # fast the machine (a fixed sleep stopped being enough once a batch of 32 took 50 ms instead of 700)
        assert first.wait(120)
        proc.send_signal(sig)
        code = proc.wait(timeout=300)
        for c in clients:
            c.join(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert len(answers) == 8 and all(a.status_code == 200 and len(a.json()["responses"]) == 32 for a in answers)
    name = signal.Signals(sig).name
    stopping, stopped = text.index(f"stopping ({name}): finishing the requests in flight"), \
        text.index(f"disco serve: stopped ({name})")
    assert stopping < text.rindex("POST /search/batch 200") < stopped, text  # served after the signal
    assert "error" not in text.lower() and "Traceback" not in text
    with pytest.raises(httpx.HTTPError):  # and it is gone
        httpx.get(url + "/health", timeout=2)


@pytest.mark.slow
def test_every_request_is_one_access_log_line(server, serve_log, test_turns):
    httpx.post(server + "/search", json={"conversation": test_turns[0]["conversation"], "k": 3}, timeout=60)
    httpx.post(server + "/search", json={"conversation": []}, timeout=60)
    httpx.get(server + "/no-such-page", timeout=60)
    time.sleep(0.5)
    lines = serve_log.read_text().splitlines()
    for method, path, status in (("POST", "/search", 200), ("POST", "/search", 422), ("GET", "/no-such-page", 404),
                                 ("GET", "/health", 200)):
        pattern = rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {method} {re.escape(path)} {status} \d+\.\d ms$"
        assert any(re.match(pattern, line) for line in lines), (method, path, status, lines[-10:])
    assert "disco serve: http://127.0.0.1:" in serve_log.read_text() and "disco search:" not in serve_log.read_text()


@pytest.mark.slow
def test_health_says_ready_only_once_the_model_is_loaded(trained_run, test_turns, tmp_path):
    """The service answers while the model loads: /health 503 "loading", a search 503 with Retry-After; then
    /health 200 "ready" and the search answers."""
    from tests.serving.conftest import free_port
    from core.proc import stop_group

    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as f:
        proc = subprocess.Popen([DISCO, "serve", str(trained_run), "--port", str(port)], stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    seen: list[tuple[int, str]] = []
    search = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(url + "/health", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            seen.append((r.status_code, r.json()["status"]))
            if r.status_code == 503 and search is None:
                search = httpx.post(url + "/search", json={"conversation": test_turns[0]["conversation"]},
                                    timeout=30)
            if r.status_code == 200:
                break
            time.sleep(0.02)
        ready = httpx.post(url + "/search", json={"conversation": test_turns[0]["conversation"]}, timeout=60)
    finally:
        stop_group(proc, 20)
    assert seen and seen[0] == (503, "loading") and seen[-1] == (200, "ready"), (seen[:3], log.read_text())
    assert {s for s in seen[:-1]} == {(503, "loading")}
    assert search is not None and search.status_code == 503 and search.headers["retry-after"] == "1"
    assert "loading" in search.json()["detail"]
    assert ready.status_code == 200 and ready.json()["results"]
    text = log.read_text()
    assert text.index("GET /health 503") < text.index("disco serve: http://127.0.0.1:") < text.index(
        "GET /health 200"), text


def test_cpu_shares_are_disjoint_and_cover_the_cpus():
    from disco.serving.workers import cpu_share

    assert [cpu_share([0, 1], i, 2) for i in range(2)] == [{0}, {1}]
    assert [cpu_share([3, 0, 2, 1], i, 2) for i in range(2)] == [{0, 2}, {1, 3}]
    assert [cpu_share([0, 1, 2, 3], i, 3) for i in range(3)] == [{0, 3}, {1}, {2}]
    assert [cpu_share([5], i, 2) for i in range(2)] == [{5}, {5}]  # fewer CPUs than workers: they share


def spread_over(workers, url: str, n: int = 16) -> list[int]:
    """Open ``n`` keep-alive connections together (a burst, as a load generator's clients start), answer one
    request on each, and count the connections each worker process holds. Earlier connections are first let
    close on the workers' side (and their close reach the command)."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(url)

    def held() -> int:
        return sum(c.status == "ESTABLISHED" and c.laddr.port == where.port for w in workers
                   for c in w.net_connections("tcp"))

    deadline = time.monotonic() + 30
    while held() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    socks = [socket.create_connection((where.hostname, where.port), timeout=30) for _ in range(n)]
    try:
        for s in socks:
            s.sendall(f"GET /health HTTP/1.1\r\nHost: {where.hostname}\r\n\r\n".encode())
        for s in socks:
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        return [sum(c.status == "ESTABLISHED" and c.laddr.port == where.port for c in w.net_connections("tcp"))
                for w in workers]
    finally:
        for s in socks:
            s.close()


def test_workers_share_the_port_answer_alike_and_stop_together(serving, searcher, test_turns, tmp_path):
    """`disco serve --workers 2`: two processes, each with its own model, behind one port; ready once both loaded;
    the single process's answers; connections opened together are split evenly over the workers (the command
    passes each to the worker with the fewest open connections), also after some closed; SIGTERM stops both,
    "stopped", exit 0."""
    import psutil

    log = tmp_path / "serve.log"
    proc, url = serving(log, "--workers", "2")
    try:
        workers = [p for p in psutil.Process(proc.pid).children() if "disco.serving.workers" in " ".join(p.cmdline())]
        assert len(workers) == 2, log.read_text()
        with httpx.Client(timeout=60) as client:
            for t in test_turns:
                got = client.post(url + "/search", json={"conversation": t["conversation"], "k": 20}).json()
                want = searcher.search(t["conversation"], k=20)
                assert [(h["id"], h["score"]) for h in got["results"]] == [(h.id, h.score) for h in want.results]
        assert spread_over(workers, url) == [8, 8], "16 connections opened together were not split 8 / 8"
        assert sorted(spread_over(workers, url, 5)) == [2, 3]  # the 16 closed: counted as gone
        assert not [c for w in workers for c in w.net_connections("tcp") if c.status == "LISTEN"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "disco serve: stopped (SIGTERM)" in log.read_text() and "Traceback" not in log.read_text()
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_workers_die_with_a_killed_command(serving, tmp_path):
    """`disco serve --workers 2 --pin-cpus` killed with SIGKILL (no handler runs): the kernel stops its workers
    (they are in their own session, so nothing else would), and the port is free again. The workers ran on their
    own shares of the CPUs."""
    import psutil

    import os

    from disco.serving.workers import cpu_share

    log = tmp_path / "serve.log"
    proc, url = serving(log, "--workers", "2", "--pin-cpus")
    workers = [p for p in psutil.Process(proc.pid).children() if "disco.serving.workers" in " ".join(p.cmdline())]
    assert len(workers) == 2, log.read_text()
    cpus = sorted(os.sched_getaffinity(0))  # --pin-cpus: each worker on its own share of the command's CPUs
    shares = {i: cpu_share(cpus, i, 2) for i in range(2)}
    for w in workers:
        index = int(w.cmdline()[w.cmdline().index("--index") + 1])
        assert set(w.cpu_affinity()) == shares[index]
    proc.kill()
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, log.read_text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/health", timeout=5)
