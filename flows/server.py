"""One Prefect server per Prefect home, started by the first `disco` command that needs it and reused by the next.

Without ``PREFECT_API_URL``, Prefect 3 starts a temporary server in every process that runs a flow
(``SubprocessASGIServer``: ~10 s to start on 2 cores, up to 5 s to stop) and has no in-process API any more, so a
fully cached ``disco run`` spent most of its time on a server. :func:`shared_server` instead points the flow at a
server kept for the Prefect home:

- ``<home>/disco-server.json`` names it (pid, port, Prefect version, server settings); a command reuses it when
  that process is alive, is this module's server for this home and answers ``/api/health``;
- otherwise the command starts it (``python -m flows.server``: Prefect's API app under uvicorn, configured as
  Prefect's own temporary server is: no UI, the services of an ephemeral server), under ``<home>/disco-server.lock``
  so that two commands starting at once start one server;
- each command holds a shared ``flock`` on ``<home>/disco-server.lease`` while it uses the server (the kernel
  drops it when the command exits, even by ``kill -9``); the server checks the lease every second and stops once
  no command has held it for ``DISCO_PREFECT_SERVER_IDLE`` seconds (default 600). It takes the lease exclusively
  to decide, and keeps it until it has exited, so a command never gets a server that is stopping.

``DISCO_PREFECT_SERVER_IDLE=0`` restores Prefect's temporary server per command. A command with ``PREFECT_API_URL``
set (a team server, ``disco ui``'s, the test harness's) uses that one. The server runs in its own session: Ctrl-C
in a terminal stops the command, not the server another command may be using; its log is
``<home>/disco-server.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Iterator

from core.errors import DiscoError
from core.paths import ROOT

RECORD, LEASE, START_LOCK, LOG = "disco-server.json", "disco-server.lease", "disco-server.lock", "disco-server.log"
IDLE_ENV = "DISCO_PREFECT_SERVER_IDLE"
DEFAULT_IDLE_S = 600.0
# What Prefect's own temporary server sets (prefect.server.api.server.SubprocessASGIServer._run_uvicorn_command).
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def idle_seconds() -> float:
    raw = os.environ.get(IDLE_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_IDLE_S
    except ValueError:
        raise DiscoError(f"{IDLE_ENV}={raw!r} is not a number of seconds (0: a temporary server per command)") \
            from None


def settings_fingerprint(env: dict[str, str]) -> dict[str, str]:
    """What a server must share with a command to serve it: Prefect's version and the server-side settings."""
    keep = {k: v for k, v in env.items() if k.startswith(("PREFECT_SERVER_", "PREFECT_API_DATABASE_"))
            and k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    return {"prefect": metadata.version("prefect"), **dict(sorted(keep.items()))}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def running(home: Path) -> dict | None:
    """The record of the home's server if it is alive, ours, for this home, and answers; else None."""
    try:
        rec = json.loads((home / RECORD).read_text(encoding="utf-8"))
        pid, url = int(rec["pid"]), str(rec["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    cmd = _cmdline(pid)
    if "flows.server" not in cmd or str(home) not in cmd or not _healthy(url):
        return None
    return rec


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_record(home: Path, rec: dict) -> None:
    tmp = home / f".{RECORD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rec), encoding="utf-8")
    os.replace(tmp, home / RECORD)


def start(home: Path, idle_s: float) -> dict:
    """Start the home's server (the caller holds the start lock) and return its record."""
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    env = {**os.environ, **SERVER_ENV, "PREFECT_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("PREFECT_API_URL", None)
    for _ in range(3):  # another process may take the port between _free_port and uvicorn's bind
        port = _free_port()
        with open(home / LOG, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "flows.server", str(home), str(port), str(idle_s)],
                                    cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        url, deadline = f"http://127.0.0.1:{port}/api", time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _healthy(url, timeout=1.0):
                rec = {"pid": proc.pid, "port": port, "url": url, "home": str(home), "idle_s": idle_s,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": settings_fingerprint(env)}
                _write_record(home, rec)
                return rec
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise DiscoError(f"the Prefect server did not answer within {timeout:.0f} s (log: {home / LOG}); "
                             "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS on a busy machine")
    raise DiscoError(f"the Prefect server could not start (log: {home / LOG})")


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def shared_server(home: str | Path | None = None) -> Iterator[str | None]:
    """Run the block against the home's shared Prefect server (started if needed); yields its API URL, or None
    when ``PREFECT_API_URL`` is already set or ``DISCO_PREFECT_SERVER_IDLE=0`` (Prefect's own behaviour then)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    idle_s = idle_seconds()
    if PREFECT_API_URL.value() or idle_s <= 0:
        yield None
        return
    home = Path(home or os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").resolve()
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / LEASE, fcntl.LOCK_SH):  # first: a server that sees a lease holder does not stop
        with _locked(home / START_LOCK, fcntl.LOCK_EX):
            rec = running(home)
            if rec is None:
                rec = start(home, idle_s)
            elif rec.get("settings") != settings_fingerprint(dict(os.environ)):
                rec = None  # a server with other settings: leave it alone, use Prefect's temporary server
        if rec is None:
            yield None
            return
        with temporary_settings({PREFECT_API_URL: rec["url"]}):
            yield rec["url"]


def _watch(server, home: Path, idle_s: float, poll_s: float = 1.0) -> None:
    """Stop ``server`` (uvicorn) once no command has held the lease for ``idle_s`` seconds."""
    fd = os.open(home / LEASE, os.O_RDWR | os.O_CREAT, 0o644)
    free_since: float | None = None
    while not server.should_exit:
        time.sleep(poll_s)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            free_since = None  # a command is using the server
            continue
        now = time.monotonic()
        free_since = now if free_since is None else free_since
        if now - free_since >= idle_s:  # keep the lease (fd stays open) until exit: no command gets this server
            try:
                if json.loads((home / RECORD).read_text(encoding="utf-8")).get("pid") == os.getpid():
                    (home / RECORD).unlink()
            except (OSError, ValueError):
                pass
            server.should_exit = True
            return
        fcntl.flock(fd, fcntl.LOCK_UN)


def serve(home: Path, port: int, idle_s: float) -> None:
    """The server process: Prefect's API app under uvicorn on 127.0.0.1:``port``, stopped by :func:`_watch`."""
    import uvicorn

    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                            log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    threading.Thread(target=_watch, args=(server, home, idle_s), daemon=True).start()
    server.run()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
