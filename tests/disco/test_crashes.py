"""SIGKILL inside the stages, then rerun: finished work is reused, the metrics equal an uninterrupted run's, no
process outlives the kill and no temporary folder is left (docs/reliability.md, "Crashes").

One small pipeline (8 demo conversations, the human teacher, a few distillation steps) runs once uninterrupted,
then once more in another folder, killed at each point below in turn and rerun after each kill:

- index: while the Lucene indexing JVM runs (its child process), killing only the `disco` process: the JVM must
  die with it (core/proc.py), not finish into a deleted folder;
- distill: mid-training (1 s after its temporary folder appears; 60 steps, so that even an idle machine is still
  training then: with 6 steps CI's idle run finished distill within 3 s), killing the whole process group;
- evaluate: while its temporary folder exists, killing the whole process group.

The teacher stage is not killed here: its kill point and outcome are evaluate's (a stage without resumable work
killed while its temporary folder exists), and each kill point costs a run (~50 s on 2 cores). With
``DISCO_CRASH_DUMP=FILE`` the outcome of each kill is written to FILE as JSON (for docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SETTINGS = ["--set", 'teacher.teachers=["human"]', "--set", "distill.steps=60", "--set", "distill.batch_size=4",
            "--set", "evaluate.latency_queries=3"]


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        cur = todo.pop()
        kids = [c for c, pp in parents.items() if pp == cur]
        found += kids
        todo += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _start(cli, args):
    return subprocess.Popen(cli.cmd(*args), cwd=cli.root, env=cli.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_when(cli, args, ready, whole_group: bool, timeout: float = 600) -> list[int]:
    """Start a run, SIGKILL it once ``ready(proc)`` holds; return the processes that outlived it."""
    proc = _start(cli, args)
    deadline = time.monotonic() + timeout
    try:
        while not ready(proc):
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill point:\n{proc.stdout.read()[-3000:]}")
            assert time.monotonic() < deadline, "kill point never reached"
            time.sleep(0.05)
        family = _children(proc.pid)
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return _wait_gone(family)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()


@pytest.mark.slow
def test_sigkill_inside_stages_then_rerun_equals_an_uninterrupted_run(tmp_path, demo_slice, cli):
    def args(out: Path) -> list[str]:
        return ["run", "demo", "--data", str(demo_slice), "--out", str(out), *SETTINGS]

    ref = cli.run(*args(tmp_path / "ref"), timeout=900)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    out = tmp_path / "crash"
    stages = out / "stages"

    def indexing(proc) -> bool:
        return any("retrieval.index.build" in _cmdline(c) for c in _children(proc.pid))

    def inside(stage: str, after: float = 0.0):
        """Once the stage's temporary folder has existed for ``after`` seconds (distill: mid-training)."""
        seen: list[float] = []

        def ready(proc) -> bool:
            if not any(stages.glob(f".{stage}-*.tmp")):
                return False
            seen.append(time.monotonic())
            return seen[-1] - seen[0] >= after
        return ready

    outcomes = {}
    for stage, ready, whole in (("index", indexing, False), ("distill", inside("distill", 1.0), True),
                                ("evaluate", inside("evaluate"), True)):
        before = {p.name: p.stat().st_ino for p in stages.glob("*-*") if not p.name.startswith(".")} \
            if stages.exists() else {}
        survivors = _kill_when(cli, args(out), ready, whole)
        assert survivors == [], [(p, _cmdline(p)) for p in survivors]  # no orphan JVM / worker
        assert not any(stages.glob(f"{stage}-*")), f"{stage}: a killed stage left a finished-looking folder"
        after = {p.name: p.stat().st_ino for p in stages.glob("*-*") if not p.name.startswith(".")}
        assert all(after.get(n) == ino for n, ino in before.items()), "a finished stage was rewritten"
        outcomes[stage] = {"kept": sorted(n for n in after if n in before), "new": sorted(set(after) - set(before)),
                           "work": sorted(p.name for p in (out / "work").glob("*")) if (out / "work").exists() else []}

    before = {p.name: p.stat().st_ino for p in stages.glob("*-*") if not p.name.startswith(".")}
    final = cli.run(*args(out), timeout=900)
    assert final.returncode == 0, final.stdout + final.stderr
    assert all((stages / n).stat().st_ino == ino for n, ino in before.items())  # finished stages reused
    assert cli.leftovers(out) == []  # the killed runs' temporaries are gone
    if os.environ.get("DISCO_CRASH_DUMP"):
        Path(os.environ["DISCO_CRASH_DUMP"]).write_text(json.dumps(outcomes, indent=1))
    got = json.loads((out / "metrics.json").read_text())["systems"]
    want = json.loads((tmp_path / "ref" / "metrics.json").read_text())["systems"]
    assert got == want
    # one folder per stage, as in the uninterrupted run (Lucene writes random segment ids, so the index's
    # fingerprint and the keys after it differ from the reference run's; the folders before it are the same)
    ref_names = sorted(p.name for p in (tmp_path / "ref" / "stages").iterdir())
    names = sorted(p.name for p in stages.iterdir())
    assert [n.split("-")[0] for n in names] == [n.split("-")[0] for n in ref_names]
    assert [n for n in names if n.startswith(("ingest", "rewrite"))] == \
        [n for n in ref_names if n.startswith(("ingest", "rewrite"))]
