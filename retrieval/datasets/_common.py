"""Parsing helpers shared by the readers of public formats (JSON arrays, optional fields, TREC/BEIR qrels).

``iter_json_array`` streams the elements of a top-level JSON array one at a time, each with the line it starts
on, so that a large file (TopiOCQA's retriever JSON) never has to be held as one parsed object and every
error names a line.
"""

from __future__ import annotations

import codecs
import difflib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from retrieval.datasets.base import Qrel, json_problem, read_tsv
from core.errors import DataError

_WS = re.compile(r"[ \t\r\n]*")
_CHUNK = 1 << 20
MAX_RECORD_CHARS = 64 << 20  # one element of a JSON array


def iter_json_array(path: Path, chunk_size: int = _CHUNK) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) for each element of the JSON array in ``path``, streaming.

    Errors (bad UTF-8, malformed or truncated JSON, not an array) are DataErrors naming the file and line.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8-sig")()
    buf, pos, line = "", 0, 1
    eof = False
    bytes_read = 0

    with open(path, "rb") as f:

        def more() -> bool:
            """Append the next chunk to ``buf``; False when the file is exhausted."""
            nonlocal buf, pos, eof, bytes_read
            if eof:
                return False
            chunk = f.read(chunk_size)
            eof = not chunk
            try:
                text = utf8.decode(chunk, final=eof)
            except UnicodeDecodeError as e:
                at = line + buf.count("\n", pos) + chunk[: max(e.start, 0)].count(b"\n")
                raise DataError(
                    path, f"not valid UTF-8 ({e.reason} at byte {bytes_read + max(e.start, 0)})", line=at
                ) from None
            bytes_read += len(chunk)
            if pos > _CHUNK and pos > len(buf) // 2:
                buf, pos = buf[pos:], 0
            buf += text
            return bool(text) or not eof

        def advance(to: int) -> None:
            nonlocal pos, line
            line += buf.count("\n", pos, to)
            pos = to

        def skip_ws() -> bool:
            """Skip whitespace; False at end of file."""
            while True:
                advance(_WS.match(buf, pos).end())  # type: ignore[union-attr]
                if pos < len(buf):
                    return True
                if not more():
                    return False

        if not skip_ws():
            raise DataError(path, "empty file: expected a JSON array")
        if buf[pos] != "[":
            raise DataError(path, f"expected a JSON array ('[' first), found {buf[pos]!r}", line=line)
        advance(pos + 1)
        expect_value = None  # None: value or ']'; True: value (after ','); False: ',' or ']'
        while True:
            if not skip_ws():
                raise DataError(path, "truncated JSON: the top-level array is never closed", line=line)
            c = buf[pos]
            if expect_value is False:
                if c == ",":
                    advance(pos + 1)
                    expect_value = True
                    continue
                if c == "]":
                    break
                raise DataError(path, f"malformed JSON (expected ',' or ']' between records, found {c!r})", line=line)
            if c == "]" and expect_value is None:
                break
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    incomplete = e.pos >= len(buf) - 6 or e.msg.startswith("Unterminated string")
                    if incomplete and len(buf) - pos > MAX_RECORD_CHARS:
                        raise DataError(path, f"a record longer than {MAX_RECORD_CHARS >> 20} M characters: is "
                                        "the file broken?", line=line) from None
                    if incomplete and more():
                        continue
                    at = line + buf.count("\n", pos, e.pos)
                    cut = not buf[e.pos:].strip() or e.msg.startswith("Unterminated string")
                    what = "truncated JSON" if eof and cut else "malformed JSON"
                    raise DataError(path, f"{what} ({json_problem(e)})", line=at) from None
                if end >= len(buf) and not isinstance(obj, (dict, list)) and more():
                    continue  # a scalar cut at the chunk end: read on to see where it stops
                break
            start = line
            advance(end)
            yield start, obj
            expect_value = False
        advance(pos + 1)
        if skip_ws():
            raise DataError(path, f"unexpected text after the JSON array: {buf[pos:pos + 20]!r}", line=line)


def json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like :func:`iter_json_array`, but every element must be a JSON object."""
    for line, obj in iter_json_array(path):
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=line)
        yield line, obj


def opt_field(
    obj: dict[str, Any],
    key: str,
    path: Path,
    line: int | None,
    kind: type | tuple[type, ...] = str,
    known: Iterable[str] = (),
    record: str | None = None,
) -> Any:
    """``obj[key]`` if present and not null (type-checked), else None.

    An absent key whose near-miss is present (``truth_rewrite`` for ``Truth_rewrite``) is an error rather than a
    silent None: a misspelled optional field would otherwise drop data unnoticed. ``known`` lists the format's
    other field names, which never count as misspellings.
    """
    if key not in obj:
        known_set = set(known) | {key}
        for k in obj:
            if k in known_set:
                continue
            if k.lower() == key.lower() or difflib.SequenceMatcher(None, k.lower(), key.lower()).ratio() >= 0.85:
                raise DataError(
                    path, f"missing field {key!r} (found {k!r}: check the spelling)", line=line, record=record
                )
        return None
    value = obj[key]
    if value is None:
        return None
    if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(path, f"field {key!r} should be {names}, got {type(value).__name__}", line=line, record=record)
    return value


def text_of(value: Any, what: str, path: Path, line: int | None, record: str | None) -> str:
    """A non-empty string, else a DataError naming the record."""
    if not isinstance(value, str):
        raise DataError(path, f"{what} should be a string, got {type(value).__name__}", line=line, record=record)
    if not value.strip():
        raise DataError(path, f"empty {what}", line=line, record=record)
    return value


def as_id(value: Any, what: str, path: Path, line: int | None) -> str:
    """An id given as a string or an integer, as a non-empty string."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(path, f"{what} should be a string or an integer, got {type(value).__name__}", line=line)
    text = str(value).strip()
    if not text:
        raise DataError(path, f"empty {what}", line=line)
    return text


def first_existing(root: Path, candidates: Iterable[str]) -> Path | None:
    for rel in candidates:
        if (root / rel).exists():
            return root / rel
    return None


def given_path(root: Path, relative: str | Path, what: str) -> Path:
    """A path given as an option (relative to the dataset folder, or absolute) that must exist."""
    path = root / relative
    if not path.exists():
        raise DataError(path, f"missing: the {what} given in the options does not exist (folder {root})")
    return path


def relevance_of(value: str, path: Path, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            as_float = None
        if as_float is not None and as_float.is_integer():
            return int(as_float)
        raise DataError(path, f"relevance {value!r} is not an integer", line=line) from None


def read_trec_qrels(path: Path) -> Iterator[Qrel]:
    """TREC qrels: ``qid iteration docid relevance`` (iteration ``0`` or ``Q0``), whitespace-separated."""
    for line, (qid, _iteration, doc_id, rel) in read_tsv(path, 4):
        yield Qrel(qid, doc_id, relevance_of(rel, path, line), where=(str(path), line))


def read_beir_qrels(path: Path) -> Iterator[Qrel]:
    """BEIR qrels: a ``query-id corpus-id score`` header, then tab-separated rows."""
    for line, (qid, doc_id, rel) in read_tsv(path, 3):
        yield Qrel(qid, doc_id, relevance_of(rel, path, line), where=(str(path), line))
