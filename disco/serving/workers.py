"""``disco serve --workers N``: N processes, each with its own model and batching worker, answering on one socket.

The command binds the port, then starts N worker processes (``python -m disco.serving.workers``). Where the system
has ``SO_REUSEPORT`` (Linux), the first worker inherits the command's listening socket and each other worker listens
on a socket of its own on the same port, so the kernel spreads new connections over the workers (by a hash of each
connection's addresses). With one shared socket instead, the worker that wakes first accepts every connection
waiting (asyncio accepts in a loop): 16 keep-alive clients arriving together all went to one of two workers in
one measurement of three, which then answered alone on one core (``benchmarks/service.py``, docs/benchmarks.md).
Without ``SO_REUSEPORT`` every worker inherits the one socket. Each worker serves at once and loads its
model beside the serving (as one process does); ``/health`` says ready only when every worker has loaded (each
marks a file in a shared temporary folder), so no request meets a loading worker after a readiness check.

SIGTERM or Ctrl-C on the command is passed to every worker, which finishes its requests in flight and exits;
the command then says "stopped". The workers run in their own session (a terminal's Ctrl-C reaches only the
command, which passes it on once) and die with the command if it is killed (``PR_SET_PDEATHSIG`` through
:func:`core.proc.die_with_parent`, with the command's pid given on their command line: a command already gone
when a worker starts ends it at once).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.errors import DiscoError
from disco.serving.batching import BatchConfig
from core.proc import Terminated, die_with_parent, signal_name


def run_workers(run_dir: Path, sock: socket.socket, n: int, backend: str, batching: BatchConfig,
                banner: str) -> str | None:
    """Serve with ``n`` worker processes on ``sock`` until SIGTERM / SIGINT; the signal's name."""
    ready_dir = Path(tempfile.mkdtemp(prefix="disco-serve-"))
    spec = {"run_dir": str(run_dir), "backend": backend, "batching": batching.model_dump(), "workers": n,
            "ready_dir": str(ready_dir)}
    threads = str(max(batching.threads or 1, batching.batch_threads or 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    own = reuses_port(sock)  # workers after the first listen on their own socket of the port
    procs: list[subprocess.Popen] = []
    stopped_by, failed = None, None
    try:
        for i in range(n):
            where = ["--fd", str(sock.fileno())] if i == 0 or not own else \
                ["--listen", json.dumps([sock.family, *sock.getsockname()[:2]])]
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "disco.serving.workers", *where, "--index", str(i),
                 "--spec", json.dumps(spec), "--parent", str(os.getpid())],
                pass_fds=(sock.fileno(),) if "--fd" in where else (), env=env, start_new_session=True))
        announced = False
        while all(p.poll() is None for p in procs):
            if not announced and len(list(ready_dir.glob("ready-*"))) == n:
                print(banner, file=sys.stderr, flush=True)
                announced = True
            time.sleep(0.2)
        failed = next(p.returncode for p in procs if p.poll() is not None)
    except (KeyboardInterrupt, Terminated) as e:
        stopped_by = signal_name(e)
        print(f"stopping ({stopped_by}): finishing the requests in flight", file=sys.stderr, flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in ready_dir.iterdir():
            f.unlink()
        ready_dir.rmdir()
    if failed is not None:
        raise DiscoError(f"a worker process exited with code {failed} (its error is above); the others were stopped")
    return stopped_by


def reuses_port(sock: socket.socket) -> bool:
    """Whether ``sock`` was bound with ``SO_REUSEPORT`` (:func:`disco.serving.service.bind`)."""
    return hasattr(socket, "SO_REUSEPORT") and bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def listen(family: int, host: str, port: int) -> socket.socket:
    """This worker's own listening socket on the command's port (``SO_REUSEPORT``, as the command's)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def main() -> None:
    """One worker process: serve on the inherited socket (or its own on the same port); load the model beside
    it; mark itself ready."""
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="the command's listening socket, inherited")
    where.add_argument("--listen", help="[family, host, port]: listen on a socket of its own (SO_REUSEPORT)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--parent", type=int, default=0, help="the command's pid: this worker dies with it")
    args = parser.parse_args()
    die_with_parent(args.parent, signal.SIGTERM)  # SIGTERM: the requests in flight finish, as on a stop
    spec = json.loads(args.spec)
    ready_dir = Path(spec["ready_dir"])

    from disco.serving.app import SearcherSlot, create_app
    from disco.serving.service import serve

    try:
        sock = socket.socket(fileno=args.fd) if args.fd is not None else listen(*json.loads(args.listen))
    except OSError as e:
        print(f"error: worker {args.index} cannot listen on the port ({e.strerror or e})", file=sys.stderr, flush=True)
        sys.exit(2)
    slot = SearcherSlot(also_ready=lambda: len(list(ready_dir.glob("ready-*"))) == spec["workers"])

    def load() -> None:
        from disco.serving.search import Searcher

        slot.set(Searcher.open(spec["run_dir"], backend=spec["backend"], batching=BatchConfig(**spec["batching"])))
        (ready_dir / f"ready-{args.index}").touch()

    try:
        serve(create_app(slot), sock, load=load)
    except DiscoError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        if slot.searcher is not None:
            slot.searcher.close()


if __name__ == "__main__":
    main()
