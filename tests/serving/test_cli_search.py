"""`disco search RUN_DIR`: a conversation file (table and JSON), the interactive mode, and clear errors."""

from __future__ import annotations

import json
import re
import signal
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


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_interactive_names_the_agent_turn_new_and_show(trained_run, searcher, test_turns):
    conv = next(t["conversation"] for t in test_turns if len(t["conversation"]) >= 3)
    first = searcher.search(conv[:1], k=3).results
    lines = [conv[0]["text"], "", "/show 1", "/new", conv[0]["text"], "", "/show 9", ""]
    done = _run(str(trained_run), "--k", "3", stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    # Enter at agent>: which passage now stands as the agent's turn
    assert f"agent's turn: passage #1 {first[0].id}: " in done.stderr
    # /show 1: the top passage whole (the table cuts it at 100 characters)
    assert len(_normal(first[0].text)) > 100 and _normal(first[0].text) in _normal(done.stdout)
    assert f"#1  {first[0].id}  (score {first[0].score:.3f})" in done.stdout
    # /new says so, and the same question after it gets the same table as at the start
    assert "new conversation" in done.stderr
    tables = [t for t in done.stdout.split("  #  ") if t.strip()]
    rows = [[line for line in t.splitlines() if re.match(r"^ +\d+  ", line)] for t in tables]
    assert len(rows) == 2 and len(rows[0]) == 3 and rows[0] == rows[1]
    assert "/show N: N is a rank between 1 and 3" in done.stderr and "error" not in done.stderr


def test_ctrl_c_ends_the_session_without_an_error(trained_run, test_turns):
    proc = subprocess.Popen([DISCO, "search", str(trained_run), "--k", "3"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(test_turns[0]["conversation"][-1]["text"] + "\n")
        proc.stdin.flush()
        while not (line := proc.stdout.readline()).startswith("("):  # the table's last line: now at agent>
            assert line, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err.rstrip().endswith("stopped") and "error" not in err and "Traceback" not in err
