"""Dataset readers: each public format becomes the same turns / corpus / qrels records.

``get_reader(name, root)`` picks a reader by format name (see ``READERS``).
"""

from __future__ import annotations

from pathlib import Path

from retrieval.datasets import (canard, cast, ikat, mtrag, mtrag_human, native, qrecc,  # noqa: F401  (registers)
                                topiocqa)
from retrieval.datasets.base import READERS, DatasetReader, Passage, Qrel, Turn
from core.errors import DataError

__all__ = ["READERS", "DatasetReader", "Passage", "Qrel", "Turn", "get_reader"]


def get_reader(fmt: str, root: str | Path, **options) -> DatasetReader:
    try:
        cls = READERS[fmt]
    except KeyError:
        raise DataError(root, f"unknown dataset format {fmt!r}; known: {', '.join(sorted(READERS))}") from None
    return cls(root, **options)
