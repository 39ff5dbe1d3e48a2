"""Atomic file writing, content hashing and the manifests passed between stages.

Every output is written to a temporary sibling and renamed into place, so an interrupted run (even
``kill -9``) leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from core.errors import StageInputError

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Works for files and directories. On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            # A directory cannot be replaced atomically on POSIX: move the old one aside first.
            old = tmp / (path.name + ".old")
            os.replace(path, old)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_parquet(path: str | Path, table: pa.Table) -> Path:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """Content hash of a file, or of a directory tree (relative names + contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Output(BaseModel):
    """One file or directory a stage produced: what downstream stages receive instead of data."""

    name: str
    path: str
    sha256: str
    rows: int | None = None

    @classmethod
    def of(cls, name: str, path: str | Path, rows: int | None = None) -> "Output":
        return cls(name=name, path=str(Path(path).resolve()), sha256=sha256_path(path), rows=rows)

    def check(self) -> Path:
        """The path, after checking that it still exists (cheap; contents are trusted by hash key)."""
        p = Path(self.path)
        if not p.exists():
            raise StageInputError(
                f"{self.name}: {self.path} recorded by an earlier run is missing; rerun with --refresh"
            )
        return p


class Manifest(BaseModel):
    """What a stage hands to the next: its outputs, small summary numbers, and its cache key."""

    stage: str
    key: str
    dir: str
    outputs: dict[str, Output] = {}
    stats: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Path:
        return self.outputs[name].check()

    def fingerprint(self) -> str:
        """Identity of this manifest's contents, for downstream cache keys."""
        return sha256_text(json.dumps({k: v.sha256 for k, v in sorted(self.outputs.items())}))
