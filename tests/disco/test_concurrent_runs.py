"""Two real `disco run` processes on one output folder: the second stops at once with a clear message, the
first finishes untouched, and a run on that folder afterwards reuses the first one's stages."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest


def _held(lock: Path) -> bool:
    """True while another process holds ``lock`` (a probe with fcntl.flock, released at once)."""
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@pytest.mark.slow
def test_second_run_on_the_same_folder_is_refused(tmp_path: Path, cli):
    data = cli.native_dataset(tmp_path / "data")
    out = tmp_path / "out"
    args = ["run", "demo", "--data", str(data), "--out", str(out), "--stage", "teacher",
            "--set", 'teacher.systems=["human"]', "--set", "distill.learn_from=human"]  # ingest, rewrite, index, teacher: ~20 s held
    first = subprocess.Popen(cli.cmd(*args), cwd=cli.root, env=cli.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _held(out / ".lock"):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        holder = json.loads((out / ".lock").read_text())
        assert holder["pid"] == first.pid

        second = cli.run(*args)
        assert first.poll() is None, "the first run ended before the second started: the test proves nothing"
        shown = second.stdout + second.stderr
        assert second.returncode == 2 and "Traceback" not in shown, shown
        assert f"{out} is in use by another disco run (pid {first.pid}" in second.stderr
        assert "pass another --out" in second.stderr

        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    assert first.returncode == 0, stdout + stderr
    assert len(list(out.glob("stages/teacher-*"))) == 1 and cli.leftovers(out) == []

    again = cli.run(*args)  # the lock went with its holder: the folder is free, and every stage is reused
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Cached" in again.stdout + again.stderr and len(list(out.glob("stages/teacher-*"))) == 1
