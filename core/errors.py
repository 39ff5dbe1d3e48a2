"""Errors a user can act on: each names the file, the record and what is wrong."""

from __future__ import annotations

from pathlib import Path


class DiscoError(Exception):
    """Base class for errors shown to users without a traceback."""


class DataError(DiscoError):
    """Bad input data: names the file, the line or record, and the problem."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None, record: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.record = record
        where = self.path
        if line is not None:
            where += f", line {line}"
        if record is not None:
            where += f", record {record!r}"
        super().__init__(f"{where}: {problem}")


class StageInputError(DiscoError):
    """An upstream output is missing or changed since it was recorded."""
