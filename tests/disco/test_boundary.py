"""The command line's boundary: real exceptions become one paragraph and an exit code; tracebacks stay off."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from core.errors import DataError
from disco.boundary import _NoTraceback, describe, without_tracebacks


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
    (KeyboardInterrupt(), 130, "interrupted"),
    (ValueError("bad thing\nsecond line"), 1, "unexpected error: ValueError: bad thing\n  Rerun with `disco --debug"),
])
def test_describe(exc, code, text):
    message, got = describe(_raised(exc))
    assert got == code and text in message and "Traceback" not in message


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
