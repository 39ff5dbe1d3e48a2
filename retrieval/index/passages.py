"""The passages ``disco encode`` reads: a JSONL file, an ingested ``corpus.parquet``, or a dataset folder in any
format the readers know (:mod:`retrieval.datasets`). Each yields ``(id, encoder input)`` in file order; bad input
is a :class:`core.errors.DataError` naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from core.errors import DataError
from retrieval.datasets.base import read_jsonl, read_lines
from retrieval.index.encode import corpus_passages, passage_input


class PassageSource(BaseModel):
    """Where the passages are and how to read them."""

    model_config = ConfigDict(extra="forbid")

    path: str
    format: str | None = None  # a dataset format (retrieval.datasets.READERS) for a folder
    id_field: str = "id"
    text_field: str = "contents"
    title_field: str | None = None  # JSONL: prepended as "title. text" (as the index stage does)

    def describe(self) -> dict:
        """The settings that decide the shards' content (a resumed run checks each kept shard's ids too)."""
        return {**self.model_dump(), "path": str(Path(self.path).resolve())}


def count(source: PassageSource) -> int | None:
    """How many passages (for the progress bar), when cheap to know."""
    path = Path(source.path)
    if path.is_file() and path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if path.is_file():
        return sum(1 for _ in read_lines(path))
    return None


def read_passages(source: PassageSource) -> Iterator[tuple[str, str]]:
    """``(id, text)`` pairs; the text is what the document encoder reads."""
    path = Path(source.path)
    if not path.exists():
        raise DataError(path, "input not found")
    if path.is_dir():
        if source.format is None:
            raise DataError(path, "a folder needs --format (a dataset format, e.g. mtrag) or give a JSONL file")
        from retrieval.datasets import get_reader

        seen: set[str] = set()
        for p in get_reader(source.format, path).passages():
            if p.doc_id not in seen:  # some formats repeat a passage for each task that cites it
                seen.add(p.doc_id)
                yield p.doc_id, passage_input(p.title or "", p.text.strip())
        return
    if path.suffix == ".parquet":
        yield from corpus_passages(pq.ParquetFile(path))
        return
    yield from _jsonl(path, source)


def _jsonl(path: Path, source: PassageSource) -> Iterator[tuple[str, str]]:
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        fields = [source.id_field, source.text_field] + ([source.title_field] if source.title_field else [])
        for f in fields:
            if f not in obj:
                present = ", ".join(sorted(obj))
                raise DataError(path, f"missing field {f!r} (fields present: {present}; choose others with "
                                      f"--id-field / --text-field)", line=line)
        doc_id, text = obj[source.id_field], obj[source.text_field]
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            raise DataError(path, f"field {source.id_field!r} should be a non-empty string", line=line)
        if not isinstance(text, str):
            raise DataError(path, f"field {source.text_field!r} should be a string, got {type(text).__name__}",
                            line=line)
        if doc_id in seen:
            raise DataError(path, f"duplicate id {doc_id!r} (first on line {seen[doc_id]})", line=line)
        seen[doc_id] = line
        title = obj.get(source.title_field) if source.title_field else ""
        yield doc_id, passage_input(title if isinstance(title, str) else "", text)
