"""One run at a time per output folder: an exclusive lock on ``<out>/.lock``.

Two ``disco run`` on the same ``--out`` would otherwise write the same stage folders, ``run.json`` and
``metrics.json`` at once. :func:`run_lock` takes ``fcntl.flock`` on ``<out>/.lock`` without waiting; the second
process gets a :class:`~core.errors.RunLocked` error naming the holder (pid, command, start time). The kernel
releases the lock when its holder exits, even by ``kill -9``, so a crashed run never leaves a stale lock.
The lock is re-entrant within a process (the CLI takes it before Prefect starts, the flow again inside).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from core.errors import DiscoError

LOCK = ".lock"
_held: dict[str, tuple[int, int]] = {}  # resolved folder -> (fd, depth) held by this process


class RunLocked(DiscoError):
    """Another process is running on the same output folder."""


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 1 << 16).decode("utf-8") or "{}")
        return (f"pid {info.get('pid')}, started {info.get('started')}, command: "
                f"{' '.join(info.get('argv', []))}")
    except (OSError, ValueError):
        return "unknown process"


@contextlib.contextmanager
def run_lock(out: str | Path) -> Iterator[Path]:
    """Hold the lock of the output folder ``out`` (created if needed) for the block; :class:`RunLocked` if another
    process holds it."""
    folder = Path(out).resolve()
    key = str(folder)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield folder / LOCK
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    if folder.exists() and not folder.is_dir():
        raise DiscoError(f"{folder} is a file, not a folder: give --out a folder (it is created if needed)")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunLocked(f"{folder} is in use by another disco run ({holder}). Two runs on one output folder "
                        "would overwrite each other's stages: wait for it to finish, or pass another --out.") from None
    os.set_inheritable(fd, False)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "argv": sys.argv,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
    _held[key] = (fd, 1)
    try:
        yield folder / LOCK
    finally:
        if _held[key][1] <= 1:
            del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        else:  # pragma: no cover (an inner holder cannot outlive the outer one)
            _held[key] = (fd, _held[key][1] - 1)
