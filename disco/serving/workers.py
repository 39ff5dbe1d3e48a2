"""``disco serve --workers N``: N processes, each with its own model and batching worker, behind one port.

The command binds the port, starts N worker processes (``python -m disco.serving.workers``) and accepts every
connection itself: each new connection goes to the worker holding the fewest open connections (ties: the one given
fewest so far), passed over a Unix socket pair (``SCM_RIGHTS``), and the worker serves it from then on (the command
never reads a byte of it); the worker says on the same pair when one of its connections closes. So 16 keep-alive
clients arriving together are split 8 / 8 over two workers, every time. Two earlier ways left it to chance: one
listening socket shared by the workers (the worker that woke first accepted every waiting connection, asyncio
accepts in a loop: all 16 on one worker in one measurement of three), and a ``SO_REUSEPORT`` socket per worker (the
kernel hashes each connection's addresses: splits of 10 / 6 were common, and the 10 clients of the busier worker
waited 44 ms on average against 31 ms, all of the slowest 1% of requests theirs; ``benchmarks/service.py``,
docs/benchmarks.md). Each worker serves at once and loads its model beside the serving (as one process does);
``/health`` says ready only when every worker has loaded (each marks a file in a shared temporary folder), so no
request meets a loading worker after a readiness check.

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
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from core.errors import DiscoError
from disco.serving.batching import BatchConfig
from core.proc import Terminated, die_with_parent, signal_name


def run_workers(run_dir: Path, sock: socket.socket, n: int, backend: str, batching: BatchConfig,
                banner: str, pin_cpus: bool = False) -> str | None:
    """Serve with ``n`` worker processes behind ``sock`` until SIGTERM / SIGINT; the signal's name. ``pin_cpus``:
    each worker runs on its own share of this process's CPUs (:func:`cpu_share`)."""
    ready_dir = Path(tempfile.mkdtemp(prefix="disco-serve-"))
    spec = {"run_dir": str(run_dir), "backend": backend, "batching": batching.model_dump(), "workers": n,
            "ready_dir": str(ready_dir), "pin_cpus": pin_cpus}
    threads = str(max(batching.threads or 1, batching.batch_threads or 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    procs: list[subprocess.Popen] = []
    pairs: list[socket.socket] = []
    stopped_by, failed = None, None
    try:
        for i in range(n):
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            mine.settimeout(5)  # a worker that stops reading must not stall every other connection's accept
            pairs.append(mine)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "disco.serving.workers", "--handoff", str(theirs.fileno()), "--index", str(i),
                 "--spec", json.dumps(spec), "--parent", str(os.getpid())],
                pass_fds=(theirs.fileno(),), env=env, start_new_session=True))
            theirs.close()
        Dispatcher(sock, pairs).run(lambda: all(p.poll() is None for p in procs),
                                    lambda: len(list(ready_dir.glob("ready-*"))) == n, banner)
        failed = next(p.returncode for p in procs if p.poll() is not None)
    except (KeyboardInterrupt, Terminated) as e:
        stopped_by = signal_name(e)
        print(f"stopping ({stopped_by}): finishing the requests in flight", file=sys.stderr, flush=True)
    finally:
        sock.close()  # no new connections while the workers finish theirs
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pair in pairs:
            pair.close()
        for f in ready_dir.iterdir():
            f.unlink()
        ready_dir.rmdir()
    if failed is not None:
        raise DiscoError(f"a worker process exited with code {failed} (its error is above); the others were stopped")
    return stopped_by


def cpu_share(cpus: list[int], index: int, n: int) -> set[int]:
    """Worker ``index`` of ``n``'s CPUs: every n-th of ``cpus`` from its own (one each when there are fewer CPUs
    than workers). With ``--pin-cpus`` a worker's threads (HTTP loop, batching, torch) stay on its share, so two
    workers do not keep moving between the same cores: on 2 cores, 16 clients, two paired runs gave 658 and 660
    requests/s pinned against 626 and 629 not (p99 33.9 / 33.3 ms against 37.0 / 36.8). Beside other busy
    processes a pinned worker cannot move to a freer core: 334 against 460 requests/s at 16 clients beside the
    benchmark's two torch neighbours, so it is not the default (docs/benchmarks.md)."""
    cpus = sorted(cpus)
    return set(cpus[index::n]) if len(cpus) >= n else {cpus[index % len(cpus)]}


class Dispatcher:
    """The command's side: accept each connection and pass it to the worker with the fewest open connections."""

    def __init__(self, sock: socket.socket, pairs: list[socket.socket]):
        self.sock, self.pairs = sock, pairs
        self.given = [0] * len(pairs)  # connections passed to each worker
        self.closed = [0] * len(pairs)  # of them, closed (one byte from the worker each)

    def pick(self) -> int:
        """The worker with the fewest open connections; ties: the one given fewest, then the first."""
        return min(range(len(self.pairs)), key=lambda i: (self.given[i] - self.closed[i], self.given[i], i))

    def give(self, conn: socket.socket) -> None:
        i = self.pick()
        try:
            socket.send_fds(self.pairs[i], [b"c"], [conn.fileno()])
            self.given[i] += 1
        except OSError:  # the worker is gone: run() notices its exit
            pass
        finally:
            conn.close()  # the worker holds its own descriptor of the connection now

    def run(self, alive, ready, banner: str) -> None:
        """Accept and dispatch while ``alive()``; print ``banner`` once ``ready()``."""
        self.sock.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ, -1)
            for i, pair in enumerate(self.pairs):
                sel.register(pair, selectors.EVENT_READ, i)
            announced = False
            while alive():
                if not announced and ready():
                    print(banner, file=sys.stderr, flush=True)
                    announced = True
                for key, _ in sel.select(timeout=0.2):
                    if key.data == -1:
                        self._accept()
                        continue
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:
                        data = b""
                    self.closed[key.data] += len(data)
                    if not data:  # the worker closed its end (it is exiting)
                        sel.unregister(key.fileobj)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. out of file descriptors: the client is refused, serving goes on
                print(f"warning: accepting a connection failed: {e.strerror or e}", file=sys.stderr, flush=True)
                return
            self.give(conn)


def main() -> None:
    """One worker process: serve the connections the command passes on; load the model beside; mark itself
    ready."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--handoff", type=int, required=True, help="the Unix socket the command passes connections on")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--parent", type=int, default=0, help="the command's pid: this worker dies with it")
    args = parser.parse_args()
    die_with_parent(args.parent, signal.SIGTERM)  # SIGTERM: the requests in flight finish, as on a stop
    spec = json.loads(args.spec)
    ready_dir = Path(spec["ready_dir"])
    if spec.get("pin_cpus") and hasattr(os, "sched_setaffinity"):  # before any thread starts: they all inherit it
        os.sched_setaffinity(0, cpu_share(list(os.sched_getaffinity(0)), args.index, spec["workers"]))

    from disco.serving.app import SearcherSlot, create_app
    from disco.serving.service import serve

    handoff = socket.socket(fileno=args.handoff)
    slot = SearcherSlot(also_ready=lambda: len(list(ready_dir.glob("ready-*"))) == spec["workers"])

    def load() -> None:
        from disco.serving.search import Searcher

        slot.set(Searcher.open(spec["run_dir"], backend=spec["backend"], batching=BatchConfig(**spec["batching"])))
        (ready_dir / f"ready-{args.index}").touch()

    try:
        serve(create_app(slot), handoff=handoff, load=load, slot=slot)
    except DiscoError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        if slot.searcher is not None:
            slot.searcher.close()


if __name__ == "__main__":
    main()
