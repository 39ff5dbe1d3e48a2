"""Atomic file writing, content hashing and the manifests passed between stages.

Every output is written to a temporary sibling, flushed to disk (the file, then its folder) and renamed into
place, so an interrupted run (even ``kill -9`` or a power cut) leaves either the old file or the new one, never
half of one. A folder that already exists is swapped with the new one in one step (Linux ``renameat2`` with
``RENAME_EXCHANGE``), so there is no moment without a folder; temporaries are named ``.<name>.*.tmp``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
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
TMP_SUFFIX = ".tmp"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def fsync_path(path: str | Path) -> None:
    """Flush a file, or every file and folder of a tree, to disk."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        for sub in sorted(path.rglob("*")):
            if sub.is_file() and not sub.is_symlink():
                _fsync(sub, os.O_RDONLY)
        for folder in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)
        _fsync(path, os.O_RDONLY | os.O_DIRECTORY)
    elif path.is_file():
        _fsync(path, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; flush it and rename it onto ``path`` when the block succeeds.

    Works for files and directories. On error the temporary is removed and ``path`` is untouched. An existing
    folder is swapped with the new one in one step (there is never a moment without a folder) and then deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        fsync_path(target)
        if path.is_dir() and not path.is_symlink():
            if not exchange(target, path):  # old kernels / other systems: move the old folder aside first
                os.replace(path, tmp / (path.name + ".old"))
                os.replace(target, path)
        else:
            os.replace(target, path)
        _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_temporaries(out: str | Path) -> list[Path]:
    """Temporary folders a killed process may have left in the run folder ``out``: at its top, in ``stages/``, in
    ``work/`` and in the per-turn cache ``cache/`` (3 levels); not in other folders below ``out`` (another run's, e.g.
    ``disco evaluate``'s)."""
    out = Path(out)
    return (stale_temporaries(out, 1) + stale_temporaries(out / "stages", 1) + stale_temporaries(out / "work", 3)
            + stale_temporaries(out / "cache", 3))


def stale_temporaries(folder: str | Path, depth: int = 2) -> list[Path]:
    """Temporary folders of :func:`atomic_path` under ``folder`` (``depth`` levels)."""
    found, level = [], [Path(folder)]
    for _ in range(depth):
        nxt = []
        for d in level:
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_dir():
                    found.append(p)
                elif p.is_dir() and not p.is_symlink():
                    nxt.append(p)
        level = nxt
    return sorted(found)


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


def size_of(path: str | Path) -> tuple[int, int]:
    """(number of files, total bytes) of a file or a folder tree: what a cache hit compares to see it whole."""
    path = Path(path)
    if path.is_file():
        return 1, path.stat().st_size
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


class Output(BaseModel):
    """One file or directory a stage produced: what downstream stages receive instead of data."""

    name: str
    path: str
    sha256: str
    rows: int | None = None
    files: int | None = None  # file count and total size when written: a cache hit checks them (verify)
    bytes: int | None = None

    @classmethod
    def of(cls, name: str, path: str | Path, rows: int | None = None, at: str | Path | None = None) -> "Output":
        """The record of ``path`` (measured at ``at`` when it is still in a temporary folder)."""
        files, size = size_of(at or path)
        return cls(name=name, path=str(Path(path).resolve()), sha256=sha256_path(at or path), rows=rows,
                   files=files, bytes=size)

    def check(self) -> Path:
        """The path, after checking that it still exists (cheap; contents are trusted by hash key)."""
        p = Path(self.path)
        if not p.exists():
            raise StageInputError(
                f"{self.name}: {self.path} recorded by an earlier run is missing; rerun with --refresh"
            )
        return p

    def verify(self) -> Path:
        """:meth:`check`, and that the output is whole: as many files and bytes as when it was written."""
        p = self.check()
        if self.files is not None and size_of(p) != (self.files, self.bytes):
            files, size = size_of(p)
            raise StageInputError(f"{self.name}: {self.path} changed since it was written ({files} files, "
                                  f"{size} bytes; recorded {self.files} files, {self.bytes} bytes)")
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
