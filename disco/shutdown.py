"""Stopping a `disco` command on SIGTERM or SIGINT: one line, exit code 143 or 130, nothing left running.

Python's default SIGTERM ends the process at once, without ``atexit``: the temporary Prefect server the command
started (a ``uvicorn`` child, stopped by Prefect at exit) was left running. :func:`install` makes the first
SIGTERM raise :class:`Terminated` in the main thread (SIGINT raises ``KeyboardInterrupt`` as usual), so the stack
unwinds: Prefect marks the flow and task runs Crashed, the boundary (disco/boundary.py) prints one line, and the
normal exit stops the server. A second signal while that runs stops the temporary server and ends the process at
once (:func:`stop_now`). Child processes die with their parent on their own: the indexing JVM
(``PR_SET_PDEATHSIG``), the vLLM worker (it watches its parent). The JVM that searches inside this process is
started with ``-Xrs`` (retrieval/index/java.py): without it the JVM takes SIGTERM and SIGINT for itself.

What a killed command leaves (a temporary stage folder) is removed by the next run, as after SIGKILL.

The services (``disco serve``, ``disco ui``) and the interactive ``disco search`` are stopped this way on purpose:
they catch :class:`Terminated` / ``KeyboardInterrupt`` themselves, say "stopped" and exit 0.

The shared Prefect server of flows/server.py (the default when no ``PREFECT_API_URL`` is set) is not the command's
to stop: other commands may be using it, and it stops itself once no command has held its lease for
``DISCO_PREFECT_SERVER_IDLE`` seconds (the kernel drops a killed command's lease). What this module stops is
Prefect's temporary per-command server (``DISCO_PREFECT_SERVER_IDLE=0``, or a shared server with other settings).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from core.proc import Terminated, signal_name  # defined in core: disco/serving needs nothing from disco/

_received: list[int] = []


def _handler(signum: int, frame) -> None:
    if _received:
        stop_now(signum)
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def install() -> None:
    """Handle SIGTERM and SIGINT as above (main thread only; a no-op elsewhere). A SIGINT ignored by the shell
    (a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _handler)


def stop_prefect_servers(grace_s: float = 5.0) -> None:
    """Stop the temporary Prefect server(s) this process started (none if it uses a server it was given)."""
    server = sys.modules.get("prefect.server.api.server")
    if server is None:
        return
    for instance in list(server.SubprocessASGIServer._instances.values()):
        proc = instance.server_process
        if proc is None:
            continue
        proc.terminate()
        try:
            proc.wait(grace_s)
        except Exception:  # noqa: BLE001 (TimeoutExpired, or a signal handler's exception: kill it then)
            proc.kill()
        finally:
            instance.server_process = None


def stop_now(signum: int) -> None:
    """The second signal: no more unwinding; stop the temporary Prefect server and exit with 128 + ``signum``."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stderr.write(f"error: {signal.Signals(signum).name} again: stopping now.\n")
        sys.stderr.flush()
        stop_prefect_servers(grace_s=1.0)
    finally:
        os._exit(128 + signum)
