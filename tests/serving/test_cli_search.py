"""`disco search RUN_DIR`: a conversation file (table and JSON), the interactive mode, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
DISCO = str(Path(sys.executable).with_name("disco"))


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DISCO, "search", *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_conversation_file_json_matches_the_api(trained_run, searcher, test_turns, tmp_path):
    conv = test_turns[0]["conversation"]
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(conv))
    done = _run(str(trained_run), "--conversation", str(path), "--k", "5", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert [r["id"] for r in body["results"]] == [h.id for h in searcher.search(conv, k=5).results]


def test_interactive_keeps_the_conversation(trained_run, searcher, test_turns):
    conv = next(t["conversation"] for t in test_turns if len(t["conversation"]) >= 3)
    # user turn, agent reply typed, next user turn, Enter for the top passage, a third turn, then end
    lines = [conv[0]["text"], conv[1]["text"], conv[2]["text"], "", "and what else?", ""]
    done = _run(str(trained_run), "--k", "3", stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    tables = [t for t in done.stdout.split("  #  ") if t.strip()]
    assert len(tables) == 3
    second = searcher.search(conv[:3], k=3).results
    assert all(h.id in tables[1] for h in second)
    top = searcher.search(conv[:3], k=1).results[0].text
    third = searcher.search([*conv[:3], {"speaker": "agent", "text": top},
                             {"speaker": "user", "text": "and what else?"}], k=3).results
    assert all(h.id in tables[2] for h in third)


def test_table_output(trained_run, test_turns, tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps({"conversation": test_turns[1]["conversation"]}))
    done = _run(str(trained_run), "--conversation", str(path), "--k", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["#", "score", "id"] and len(lines) == 6 and "encode" in lines[-1]


@pytest.mark.parametrize("content, message", [
    ("{oops", "line 1: not valid JSON"),
    ('"hello"', "expected a list"),
    ('[{"speaker": "user", "text": "a"}, {"speaker": "robot", "text": "b"}]', "record 'turn 2'"),
    ('[{"speaker": "user", "text": "a"}, {"speaker": "agent", "text": "b"}]', "must be the user's"),
])
def test_bad_conversation_files_are_named_without_traceback(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    done = _run(str(tmp_path), "--conversation", str(path))
    assert done.returncode == 2
    assert message in done.stderr and str(path) in done.stderr and "Traceback" not in done.stderr


def test_missing_run_is_named(tmp_path):
    done = _run(str(tmp_path))
    assert done.returncode == 2 and "run.json not found" in done.stderr and "Traceback" not in done.stderr
