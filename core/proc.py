"""Stopping a child process group: SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import os
import signal
import subprocess


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
