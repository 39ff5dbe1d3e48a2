"""The reader interface: every dataset format becomes three streams of records.

A reader only parses; validation that holds for every format (duplicate ids, qrels naming unknown turns or
passages, empty texts) lives in :mod:`retrieval.ingest`. Each record carries ``where`` (file, line) so that any
error can name the file and the line or record it came from.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from core.errors import DataError


def json_problem(e: json.JSONDecodeError) -> str:
    """A JSON parse error's message without Python's dangling "at" ("Unterminated string starting at")."""
    return e.msg.removesuffix(" starting at")

Where = tuple[str, int | None]


@dataclass
class Turn:
    conversation_id: str
    turn: int  # 1-based position in the conversation
    question: str
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), oldest first
    answer: str | None = None
    human_rewrite: str | None = None
    split: str | None = None  # given by the dataset, else assigned at ingest
    turn_id: str = ""
    where: Where = ("", None)

    def __post_init__(self) -> None:
        if not self.turn_id:
            self.turn_id = f"{self.conversation_id}_{self.turn}"


def exchange(question: str, answer: str | None) -> list[tuple[str, str]]:
    """What one turn adds to the history of the next: the user's question, then the agent's answer if any."""
    return [("user", question), ("agent", answer)] if answer else [("user", question)]


@dataclass
class Passage:
    doc_id: str
    text: str
    title: str = ""
    where: Where = ("", None)


@dataclass
class Qrel:
    turn_id: str
    doc_id: str
    relevance: int
    where: Where = ("", None)


class DatasetReader(ABC):
    """Parses one dataset folder. Subclasses set ``name`` and implement the three streams."""

    name: ClassVar[str]
    has_corpus: ClassVar[bool] = True

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.exists():
            raise DataError(self.root, "dataset folder does not exist")
        if not self.root.is_dir():
            raise DataError(self.root, f"a file, not a dataset folder: give the folder that holds the dataset's "
                            f"files (perhaps {self.root.parent})")

    @abstractmethod
    def turns(self) -> Iterator[Turn]: ...

    def passages(self) -> Iterator[Passage]:
        return iter(())

    def qrels(self) -> Iterator[Qrel]:
        return iter(())

    def require(self, relative: str) -> Path:
        path = self.root / relative
        if not path.exists():
            raise DataError(path, f"missing: a {self.name} dataset needs this file (folder {self.root})")
        return path


READERS: dict[str, type[DatasetReader]] = {}


def register(cls: type[DatasetReader]) -> type[DatasetReader]:
    READERS[cls.name] = cls
    return cls


MAX_LINE_BYTES = 64 << 20  # one record (a JSONL conversation, a TSV row); a longer line is a broken file


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without the line end) of each non-blank line; bad UTF-8 or a line longer than
    :data:`MAX_LINE_BYTES` (a file without line ends, which would otherwise be read whole) names the line."""
    if path.is_dir():
        raise DataError(path, "expected a file, found a folder")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(path, f"line longer than {MAX_LINE_BYTES >> 20} MiB: is the file broken or "
                                "missing its line ends?", line=lineno)
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})", line=lineno) from None
            if line.strip():
                yield lineno, line


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a clear error for bad UTF-8 or JSON."""
    for lineno, line in read_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON ({json_problem(e)} at column {e.colno})", line=lineno) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        yield lineno, obj


def field_of(obj: dict[str, Any], key: str, path: Path, line: int | None, kind: type = str) -> Any:
    """``obj[key]`` checked for presence and type, else a DataError naming file, line and field."""
    if key not in obj:
        near = [k for k in obj if k.lower() == key.lower()]
        hint = f" (found {near[0]!r}: check the spelling)" if near else f"; fields present: {sorted(obj)}"
        raise DataError(path, f"missing field {key!r}{hint}", line=line)
    value = obj[key]
    if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, kind):
        raise DataError(path, f"field {key!r} should be {kind.__name__}, got {type(value).__name__}", line=line)
    return value


def read_tsv(path: Path, columns: int, header: bool | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of a tab- (or whitespace-, for TREC qrels) separated file."""
    for lineno, line in read_lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if lineno == 1 and header is not False and not parts[-1].lstrip("-").isdigit():
            continue  # a header line
        if len(parts) != columns:
            raise DataError(path, f"expected {columns} fields, found {len(parts)}", line=lineno)
        yield lineno, parts
