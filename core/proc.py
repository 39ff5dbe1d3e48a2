"""Processes: stopping a child's process group (SIGTERM, then SIGKILL after a grace period), killing what is left of
one, a child dying with its parent, whether a pid lives, and the exception a handled SIGTERM raises
(:class:`Terminated`; disco/shutdown.py installs the handler)."""

from __future__ import annotations

import os
import ctypes
import signal
import subprocess
import sys
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


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid``, if anything of it is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a child, first thing: Linux's ``prctl(PR_SET_PDEATHSIG, sig)`` has the kernel send ``sig`` to this process
    as soon as the process that started it ends, however it ends (``kill -9`` included); a ``parent`` already gone
    (this process re-parented before the call) ends it at once. The parent's pid comes from the command line or the
    environment (``preexec_fn`` is unsafe in a process with threads, as Prefect's are)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:
        os._exit(1)


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
