"""The command line's boundary: real exceptions become one paragraph and an exit code; tracebacks stay off."""

from __future__ import annotations

import errno
import logging
import os

from pathlib import Path

import pytest

from core.errors import DataError
from disco.boundary import _NoTraceback, describe, without_tracebacks
from disco.shutdown import Terminated


def _raised(e: BaseException) -> BaseException:
    try:
        raise e
    except BaseException as caught:  # noqa: BLE001
        return caught


@pytest.mark.parametrize("exc, code, text", [
    (DataError("/d/x.jsonl", "missing field 'q'", line=3), 2, "/d/x.jsonl, line 3: missing field 'q'"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x.parquet"), 4, "disk full while writing /runs/x.parquet"),
    (OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"), 4, "disk full"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 4, "permission denied: /root/x"),
    (MemoryError(), 3, "out of memory"),
    (KeyboardInterrupt(), 130, "interrupted (SIGINT). Finished stages are kept"),
    (Terminated(), 143, "terminated (SIGTERM). Finished stages are kept"),
    (ValueError("bad thing\nsecond line"), 1, "unexpected error: ValueError: bad thing\n  Rerun with `disco --debug"),
])
def test_describe(exc, code, text):
    message, got = describe(_raised(exc))
    assert got == code and text in message and "Traceback" not in message


def test_commands_without_stages_do_not_promise_resuming():
    """`disco search FILE` or `export` interrupted: no word of stages (they have none)."""
    assert describe(_raised(KeyboardInterrupt()), stages=False) == ("interrupted (SIGINT).", 130)
    assert describe(_raised(Terminated()), stages=False) == ("terminated (SIGTERM).", 143)


def test_the_stage_note_is_shown():
    e = OSError(errno.ENOSPC, "No space left on device", "/runs/x")
    e.add_note("in stage index (folder /runs/stages/index-1; nothing of it was kept)")
    assert "\n  in stage index (folder" in describe(e)[0]


def test_quoted_tracebacks_are_dropped():
    log = ("vLLM worker failed with exit code 1\n--- last lines ---\nloading model\nTraceback (most recent call last):\n"
           '  File "/x/worker.py", line 3, in <module>\n    main()\nRuntimeError: CUDA out of memory\n'
           "java.lang.IllegalStateException: bad\n\tat org.apache.lucene.Foo(Foo.java:1)\n")
    text = without_tracebacks(log)
    assert 'File "' not in text and "Traceback" not in text and "\tat org" not in text
    assert "RuntimeError: CUDA out of memory" in text and "java.lang.IllegalStateException: bad" in text


def test_console_formatter_drops_the_traceback_but_keeps_it_for_other_handlers():
    try:
        raise DataError("/d/x", "bad")
    except DataError:
        record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed", None,
                                   exc_info=__import__("sys").exc_info())
    assert "Traceback" not in _NoTraceback(logging.Formatter()).format(record)
    assert "Traceback" in logging.Formatter().format(record)  # the record is untouched for the API handler


def test_a_second_signal_stops_at_once():
    """The first SIGTERM raises Terminated (the stack unwinds); a second one while that runs exits 143 at once."""
    import subprocess
    import sys

    script = ("import os, signal, time\n"
              "from disco import shutdown\n"
              "shutdown.install()\n"
              "try:\n"
              "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
              "except shutdown.Terminated as e:\n"
              "    print('first:', e, flush=True)\n"
              "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
              "print('not stopped')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 143, done.stdout + done.stderr
    assert done.stdout == "first: terminated by SIGTERM\n" and "SIGTERM again: stopping now" in done.stderr
