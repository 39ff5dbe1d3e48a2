"""Fixtures to run the real `disco` command line in a subprocess, against the session's Prefect API.

Used by the bad-input, concurrency and crash tests: each asserts what a user sees on the terminal.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `disco` subprocess: this checkout's code, the session's Prefect API and home."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false"}
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env.pop("DISCO_DEBUG", None)
    return {**env, **extra}


def disco_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "disco.cli", *map(str, args)]


class _Forker:
    """tests/disco/forkcli.py, started once: forks one process per `disco` command (see its docstring)."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkcli.py"))], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, args: list[str], env: dict[str, str], fsize_kb: int | None, timeout: float
            ) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as d:
            out, err = Path(d) / "stdout", Path(d) / "stderr"
            extra = {k: v for k, v in env.items() if self.env.get(k) != v}
            self.proc.stdin.write(json.dumps({"args": args, "env": extra, "cwd": str(ROOT), "stdout": str(out),
                                              "stderr": str(err), "fsize_kb": fsize_kb}) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self.proc.stdout.readline())["pid"]
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                os.killpg(pid, signal.SIGKILL)
            code = json.loads(self.proc.stdout.readline())["code"]
            if not ready:
                raise subprocess.TimeoutExpired(args, timeout)
            return subprocess.CompletedProcess(args, code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


_forker: list[_Forker] = []


def run_cli(*args: str, timeout: float = 900, fsize_kb: int | None = None, **env: str
            ) -> subprocess.CompletedProcess:
    """`disco ARGS` in a process of its own (forked from tests/disco/forkcli.py, or a fresh interpreter with
    DISCO_TEST_SPAWN=1); ``fsize_kb``: under a file-size limit (writes past it fail with EFBIG, as on a full
    disk)."""
    full_env = cli_env(**env)
    if os.environ.get("DISCO_TEST_SPAWN") != "1":
        if not _forker:
            _forker.append(_Forker(cli_env()))
        return _forker[0].run(list(map(str, args)), full_env, fsize_kb, timeout)
    cmd = disco_cmd(*args)
    if fsize_kb is not None:
        cmd = ["bash", "-c", f'ulimit -f {fsize_kb}; exec "$@"', "disco", *cmd]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def native_dataset(folder: Path, convs: list | None = None, passages: list | None = None,
                   qrels: str | None = None) -> Path:
    """A small dataset in the project's own format (data/README.md): 3 conversations, 6 passages, qrels."""
    folder.mkdir(parents=True, exist_ok=True)
    if convs is None:
        convs = [{"conversation_id": f"c{i}", "turns": [
            {"question": f"what is topic {i}?", "answer": f"topic {i} is a thing.", "rewrite": f"what is topic {i}?"},
            {"question": "where is it?", "rewrite": f"where is topic {i}?"}]} for i in range(3)]
    if passages is None:
        passages = [{"id": f"p{i}", "title": f"topic {i % 3}", "text": f"topic {i % 3} is found in place {i}."}
                    for i in range(6)]
    if qrels is None:
        qrels = "turn_id\tdoc_id\trelevance\n" + "".join(f"c{i}_{t}\tp{i}\t1\n" for i in range(3) for t in (1, 2))
    (folder / "conversations.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    (folder / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    (folder / "qrels.tsv").write_text(qrels)
    return folder


def leftovers(out: Path) -> list[str]:
    """Temporary folders (``.*.tmp``) anywhere under ``out``: a finished or failed run must leave none."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.tmp")) if out.exists() else []


class _Cli:
    """The helpers above, for tests (pytest's importlib mode does not let test modules import each other)."""

    root = ROOT
    env = staticmethod(cli_env)
    cmd = staticmethod(disco_cmd)
    run = staticmethod(run_cli)
    native_dataset = staticmethod(native_dataset)
    leftovers = staticmethod(leftovers)


@pytest.fixture(scope="session")
def cli(prefect_api) -> _Cli:
    """Run `disco` in subprocesses against the session's Prefect API."""
    yield _Cli()
    while _forker:
        _forker.pop().close()
