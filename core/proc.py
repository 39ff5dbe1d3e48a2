"""Processes: stopping a child's process group (SIGTERM, then SIGKILL after a grace period), whether a pid lives, and
the exception a handled SIGTERM raises (:class:`Terminated`; disco/shutdown.py installs the handler)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM ``proc``'s process group (it was started with ``start_new_session=True``), SIGKILL after
    ``grace_s`` seconds; returns once ``proc`` is reaped, or at once if the group is already gone."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            proc.wait()
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an exited child not yet reaped); Linux ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (a ``BaseException``: ``except Exception`` does not swallow it)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def signal_name(e: BaseException) -> str:
    """The signal a stop exception stands for: ``SIGINT`` for KeyboardInterrupt, else :class:`Terminated`'s."""
    return signal.Signals(getattr(e, "signum", signal.SIGINT)).name
