"""Kills inside every stage, then reruns: finished work is reused, the outputs equal an uninterrupted run's, no
process outlives the kill and no temporary folder is left (docs/reliability.md, "Crashes", has the crash matrix).

``test_kills_inside_stages_then_rerun_equals_an_uninterrupted_run``: one small pipeline (8 demo conversations, the
human teacher, 60 distillation steps) runs once uninterrupted, then once more in another folder, killed at each
point below in turn, each kill's run being the rerun of the one before:

- index: while the Lucene indexing JVM runs (its child process), SIGKILL of the `disco` process only: the JVM must
  die with it (core/proc.py), not finish into a deleted folder;
- teacher: SIGKILL of the whole process group while the stage's temporary folder exists;
- teacher: SIGTERM of the `disco` process only, once the searching JVM is loaded in the process, with the
  command's own temporary Prefect server: exit 143, one line, no traceback, the server and every child gone;
- distill: mid-training (1 s after its temporary folder appears; 60 steps, so that even an idle machine is still
  training then), SIGKILL of the whole process group;
- evaluate: SIGINT of the `disco` process only (its own temporary Prefect server): exit 130, one line, nothing left;
- evaluate: SIGKILL of the whole process group while its temporary folder exists.

``test_sigkill_mid_rewrite_loses_and_repeats_no_turn``: the LLM rewrite stage (transformers) on 9 turns, killed
once its first part of 8 rewrites is written, then rerun: the part is kept as it was, the rerun writes only the
9th turn, every turn is rewritten exactly once. With the vLLM venv (`make vllm-env`), the same stage on the vLLM
backend is killed while its worker runs: no worker or engine process survives.

With ``DISCO_CRASH_DUMP=FILE`` the outcome of each kill is written to FILE as JSON (for docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from core.proc import alive

# Lucene for teacher and evaluate: on the demo slice `auto` takes the in-memory sparse searcher, and the kill points
# must cover the JVM in the process (the SIGTERM point waits for it); the sparse path starts no process or JVM.
SETTINGS = ["--set", 'teacher.systems=["human"]', "--set", "distill.learn_from=human", "--set", "distill.steps=60", "--set", "distill.batch_size=4",
            "--set", "evaluate.latency_queries=3", "--set", "teacher.searcher=lucene", "--set", "evaluate.searcher=lucene"]


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


def _procs_with(needle: str) -> list[int]:
    """Live pids whose command line contains ``needle``."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and needle in _cmdline(int(p.name))
            and alive(int(p.name))]


def _jvm_loaded(pid: int) -> bool:
    """The process has a JVM in it (libjvm mapped): Pyserini's searcher was created there."""
    try:
        return "libjvm" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Kill:
    """One kill of a run: its exit code, what it printed, the processes that outlived it."""

    def __init__(self, code: int, output: str, survivors: list[int], family: list[str], jvm: bool):
        self.code, self.output, self.survivors, self.family, self.jvm = code, output, survivors, family, jvm


def _kill_when(cli, args, ready, sig: int = signal.SIGKILL, whole_group: bool = True, log: Path | None = None,
               env: dict | None = None, timeout: float = 900) -> Kill:
    """Start ``disco ARGS`` in its own session, send ``sig`` once ``ready(proc)`` holds (to the whole process group
    or to the `disco` process only), wait for it to end; output goes to ``log`` (a pipe could fill and block)."""
    log = log or Path(os.devnull)
    with open(log, "w") as out:
        proc = subprocess.Popen(cli.cmd(*args), cwd=cli.root, env=env or cli.env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready(proc):
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill point:\n{_tail(log)}")
            assert time.monotonic() < deadline, "kill point never reached"
            time.sleep(0.05)
        family = _children(proc.pid)
        names, jvm = [_cmdline(p)[:200] for p in family], _jvm_loaded(proc.pid)
        (os.killpg if whole_group else os.kill)(proc.pid, sig)
        code = proc.wait(timeout=120)
        return Kill(code, _tail(log, 100_000), _wait_gone(family), names, jvm)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _own_prefect_server_env(cli, home: Path) -> dict:
    """The environment of a command that starts its own temporary Prefect server: no PREFECT_API_URL and no shared
    server (DISCO_PREFECT_SERVER_IDLE=0; the shared one outlives a command on purpose, tests/flows/test_server.py)."""
    env = cli.env(PREFECT_HOME=str(home), DISCO_PREFECT_SERVER_IDLE="0")
    env.pop("PREFECT_API_URL", None)
    return env


def _check_clean_stop(kill: Kill, code: int, message: str) -> None:
    """A SIGTERM / SIGINT stop: the exit code, one line saying so, no traceback, nothing left running."""
    assert kill.code == code, kill.output[-3000:]
    assert "Traceback" not in kill.output and 'File "' not in kill.output, kill.output[-3000:]
    errors = [line for line in kill.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(message, errors[0]), kill.output[-3000:]
    assert any("uvicorn" in c and "prefect.server" in c for c in kill.family), kill.family  # it had its own server
    assert kill.survivors == [], [(p, _cmdline(p)) for p in kill.survivors]


def _finished(stages: Path) -> dict[str, int]:
    """The finished stage folders and their inodes (a rewritten folder gets a new inode)."""
    return {p.name: p.stat().st_ino for p in stages.glob("*-*") if not p.name.startswith(".")} \
        if stages.exists() else {}


@pytest.mark.slow
def test_kills_inside_stages_then_rerun_equals_an_uninterrupted_run(tmp_path, demo_slice, cli):
    def args(out: Path) -> list[str]:
        return ["run", "demo", "--data", str(demo_slice), "--out", str(out), *SETTINGS]

    ref = cli.run(*args(tmp_path / "ref"), timeout=900)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    out = tmp_path / "crash"
    stages = out / "stages"
    own_server = _own_prefect_server_env(cli, tmp_path / "prefect-home")

    def indexing(proc) -> bool:
        return any("retrieval.index.build" in _cmdline(c) for c in _children(proc.pid))

    def inside(stage: str, after: float = 0.0, jvm: bool = False):
        """Once the stage's temporary folder has existed for ``after`` seconds (distill: mid-training), and with
        ``jvm`` once the process has loaded the searching JVM."""
        seen: list[float] = []

        def ready(proc) -> bool:
            if not any(stages.glob(f".{stage}-*.tmp")) or (jvm and not _jvm_loaded(proc.pid)):
                return False
            seen.append(time.monotonic())
            return seen[-1] - seen[0] >= after
        return ready

    points = [  # (stage, kill point, ready, signal, whole group, own Prefect server, (exit code, message))
        ("index", "indexing JVM running", indexing, signal.SIGKILL, False, False, None),
        ("teacher", "temporary folder exists", inside("teacher"), signal.SIGKILL, True, False, None),
        ("teacher", "searching JVM loaded in the process", inside("teacher", jvm=True), signal.SIGTERM, False, True,
         (143, r"^error: terminated \(SIGTERM\)\. Finished stages are kept")),
        ("distill", "1 s into training", inside("distill", 1.0), signal.SIGKILL, True, False, None),
        ("evaluate", "temporary folder exists", inside("evaluate"), signal.SIGINT, False, True,
         (130, r"^error: interrupted \(SIGINT\)\. Finished stages are kept")),
        ("evaluate", "temporary folder exists", inside("evaluate"), signal.SIGKILL, True, False, None),
    ]
    outcomes = []
    for i, (stage, point, ready, sig, whole, server, clean) in enumerate(points):
        before = _finished(stages)
        started = time.monotonic()
        kill = _kill_when(cli, args(out), ready, sig, whole, tmp_path / f"kill-{i}.log",
                          own_server if server else None)
        if clean:
            _check_clean_stop(kill, *clean)
        assert kill.survivors == [], [(p, _cmdline(p)) for p in kill.survivors]  # no orphan JVM / server
        assert not any(stages.glob(f"{stage}-*")), f"{stage}: a killed stage left a finished-looking folder"
        after = _finished(stages)
        assert all(after.get(n) == ino for n, ino in before.items()), "a finished stage was rewritten"
        outcomes.append({"stage": stage, "point": point, "signal": signal.Signals(sig).name,
                         "to": "process group" if whole else "disco process", "exit": kill.code,
                         "jvm_in_process": kill.jvm, "children": kill.family, "survivors": len(kill.survivors),
                         "kept": sorted(n for n in after if n in before), "new": sorted(set(after) - set(before)),
                         "temporaries": sorted(p.name for p in stages.glob(".*.tmp")),
                         "work": sorted(p.name for p in (out / "work").glob("*")) if (out / "work").exists() else [],
                         "seconds": round(time.monotonic() - started, 1)})

    before = _finished(stages)
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


REWRITE = ["--stage", "rewrite", "--set", 'teacher.systems=["human","llm"]', "--set", "rewrite.batch_size=1",
           "--set", "rewrite.max_new_tokens=4", "--set", "rewrite.output_checks=false"]


def _nine_turns(cli, folder: Path) -> Path:
    """3 conversations of 3 turns: with batch size 1 the LLM's rewrites go in parts of 8, so 2 parts."""
    convs = [{"conversation_id": f"c{i}", "turns": [
        {"question": f"what is topic {i}?", "answer": f"topic {i} is a thing.", "rewrite": f"what is topic {i}?"},
        {"question": "where is it found?", "answer": f"in place {i}.", "rewrite": f"where is topic {i} found?"},
        {"question": "how big is it?", "rewrite": f"how big is topic {i}?"}]} for i in range(3)]
    qrels = "turn_id\tdoc_id\trelevance\n" + "".join(f"c{i}_{t}\tp{i}\t1\n" for i in range(3) for t in (1, 2, 3))
    return cli.native_dataset(folder, convs, qrels=qrels)


def _part_rows(parts: Path) -> dict[str, list[dict]]:
    return {p.name: pl.read_parquet(p).select(["turn_id", "rewrite"]).to_dicts() for p in sorted(parts.glob("part-*"))}


@pytest.mark.slow
def test_sigkill_mid_rewrite_loses_and_repeats_no_turn(tmp_path, cli):
    data = _nine_turns(cli, tmp_path / "data")
    out = tmp_path / "out"
    args = ["run", "demo", "--data", str(data), "--out", str(out), *REWRITE]

    def first_part(proc) -> bool:
        return any(out.glob("work/rewrite-llm-*/parts/part-00000.parquet"))

    kill = _kill_when(cli, args, first_part, log=tmp_path / "kill.log")
    assert kill.survivors == [], [(p, _cmdline(p)) for p in kill.survivors]
    assert not any(out.glob("stages/rewrite-*")), "the killed rewrite stage left a finished-looking folder"
    [parts] = out.glob("work/rewrite-llm-*/parts")
    killed = _part_rows(parts)
    assert list(killed) == ["part-00000.parquet"] and len(killed["part-00000.parquet"]) == 8, killed
    digest = hashlib.sha256((parts / "part-00000.parquet").read_bytes()).hexdigest()

    rerun = cli.run(*args, timeout=900)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert hashlib.sha256((parts / "part-00000.parquet").read_bytes()).hexdigest() == digest  # kept, not redone
    rows = [r for rows in _part_rows(parts).values() for r in rows]
    turns = [f"c{i}_{t}" for i in range(3) for t in (1, 2, 3)]
    assert sorted(r["turn_id"] for r in rows) == turns, "a turn lost or rewritten twice in the parts"
    [stage] = out.glob("stages/rewrite-*")
    table = pl.read_parquet(stage / "rewrites.parquet")
    llm = table.filter(pl.col("teacher") == "llm")
    assert sorted(llm["turn_id"]) == turns and sorted(table.filter(pl.col("teacher") == "human")["turn_id"]) == turns
    assert dict(zip(llm["turn_id"], llm["rewrite"])) == {r["turn_id"]: r["rewrite"] for r in rows}
    assert cli.leftovers(out) == []
    if os.environ.get("DISCO_CRASH_DUMP"):
        with open(os.environ["DISCO_CRASH_DUMP"] + ".rewrite", "w") as f:
            json.dump({"killed_parts": {k: len(v) for k, v in killed.items()}, "seconds_to_kill": None,
                       "parts_after_rerun": {k: len(v) for k, v in _part_rows(parts).items()}}, f, indent=1)


def _vllm_importable() -> bool:
    python = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
    python = Path(os.environ.get("DISCO_VLLM_PYTHON", python))
    return python.exists() and subprocess.run([str(python), "-c", "import vllm"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_sigkill_of_the_pipeline_leaves_no_vllm_worker(tmp_path, cli):
    """The rewrite stage on the vLLM backend, the `disco` process group SIGKILLed while its worker (a session of its
    own, so not in that group) runs: the worker notices and takes its engine processes down with it."""
    if not _vllm_importable():
        if os.environ.get("DISCO_REQUIRE_VLLM") == "1":
            pytest.fail("no vLLM venv (make vllm-env)")
        pytest.skip("no vLLM venv (make vllm-env)")
    data = _nine_turns(cli, tmp_path / "data")
    out = tmp_path / "out"
    args = ["run", "demo", "--data", str(data), "--out", str(out), *REWRITE, "--set", "rewrite.backend=vllm"]
    needle = str(out / "work")

    def worker_running(proc) -> bool:
        return any("models.rewrite.vllm_worker" in _cmdline(p) for p in _procs_with(needle))

    kill = _kill_when(cli, args, worker_running, log=tmp_path / "kill.log")
    assert kill.survivors == [], [(p, _cmdline(p)) for p in kill.survivors]
    [worker] = [p for p in _procs_with(needle) if "models.rewrite.vllm_worker" in _cmdline(p)] or [None]
    if worker is not None:  # it checks its parent every 5 s
        assert _wait_gone([worker], timeout=30) == [], f"the vLLM worker outlived the pipeline: {_cmdline(worker)}"
    time.sleep(1)
    assert _procs_with(needle) == [], "a process of the worker outlived it"
