"""Checks at ingest of what later stages would trip on, for records of every format.

A reader parses; these checks make sure what it yields fits the Parquet schemas and the later stages:
types (a number where text belongs fails deep inside Arrow), ranges (turn numbers from 1, Arrow's int32),
identifiers (whitespace splits a TREC run or qrels line into the wrong fields; control characters and very long
ids break files and URLs) and sizes (a passage of millions of characters is a broken file, not a passage).
Each check returns the problem as ``(kind, message)`` for :class:`retrieval.ingest.Problems`, or None.
"""

from __future__ import annotations

import re
from typing import Any

from retrieval.datasets.base import Passage, Qrel, Turn

MAX_ID_CHARS = 256
MAX_QUESTION_CHARS = 20_000
MAX_TEXT_CHARS = 1_000_000  # a passage, an answer, a rewrite, a history entry
INT32 = 2**31 - 1
SPLITS = ("train", "dev", "test")
ROLES = ("user", "agent")
_BAD_ID = re.compile(r"[\s\x00-\x1f\x7f]")

Problem = tuple[str, str] | None


def _type(value: Any, kind: type | tuple[type, ...], what: str, optional: bool = False) -> Problem:
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        return "wrong_type", f"{what} should be {names}{' or null' if optional else ''}, got {type(value).__name__}"
    return None


def id_problem(value: Any, what: str) -> Problem:
    """An identifier: a non-empty string without whitespace or control characters, at most MAX_ID_CHARS."""
    if (p := _type(value, str, what)) is not None:
        return p
    if not value:
        return "bad_id", f"empty {what}"
    if m := _BAD_ID.search(value):
        char = "whitespace" if m.group().isspace() else "a control character"
        return "bad_id", (f"{what} {value!r} contains {char} ({m.group()!r}): TREC run and qrels files separate "
                          "fields by spaces, so it would break them; rename it in the dataset")
    if len(value) > MAX_ID_CHARS:
        return "bad_id", f"{what} is {len(value)} characters long (at most {MAX_ID_CHARS})"
    return None


def text_problem(value: Any, what: str, limit: int, optional: bool = False) -> Problem:
    if (p := _type(value, str, what, optional)) is not None or value is None:
        return p
    if len(value) > limit:
        return "too_long", f"{what} is {len(value):,} characters long (at most {limit:,}): is the file broken?"
    return None


def turn_problem(t: Turn, dataset_splits: bool) -> Problem:
    """Types, ids, turn number, split and sizes of one turn (``dataset_splits``: the split comes from the data)."""
    checks = [
        lambda: id_problem(t.conversation_id, "conversation id"),
        lambda: id_problem(t.turn_id, "turn id"),
        lambda: _type(t.turn, int, "turn number"),
        lambda: None if 1 <= t.turn <= INT32 else ("bad_turn", f"turn number {t.turn} should be at least 1 "
                                                                "(turns are numbered from 1)"),
        lambda: text_problem(t.question, "question", MAX_QUESTION_CHARS),
        lambda: text_problem(t.answer, "answer", MAX_TEXT_CHARS, optional=True),
        lambda: text_problem(t.human_rewrite, "rewrite", MAX_QUESTION_CHARS, optional=True),
        lambda: _type(t.split, str, "split", optional=True),
        lambda: None if not dataset_splits or t.split is None or t.split in SPLITS else
        ("bad_split", f"split {t.split!r} should be one of {', '.join(SPLITS)}"),
        lambda: _history_problem(t.history),
    ]
    for check in checks:
        if (p := check()) is not None:
            return p
    return None


def _history_problem(history: Any) -> Problem:
    if not isinstance(history, list):
        return "wrong_type", f"history should be a list, got {type(history).__name__}"
    for i, entry in enumerate(history, start=1):
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[0] in ROLES):
            return "wrong_type", f"history entry {i} should be (role, text) with role user or agent"
        if (p := text_problem(entry[1], f"history entry {i}", MAX_TEXT_CHARS)) is not None:
            return p
    return None


def passage_problem(p: Passage) -> Problem:
    return (id_problem(p.doc_id, "passage id") or text_problem(p.text, "passage text", MAX_TEXT_CHARS)
            or text_problem(p.title, "passage title", MAX_QUESTION_CHARS, optional=True))


def qrel_problem(q: Qrel) -> Problem:
    return (id_problem(q.turn_id, "qrel turn id") or id_problem(q.doc_id, "qrel passage id")
            or _type(q.relevance, int, "relevance")
            or (None if -INT32 <= q.relevance <= INT32 else ("bad_relevance", f"relevance {q.relevance} is out of "
                                                                              "range")))
