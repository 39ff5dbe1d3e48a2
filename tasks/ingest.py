"""Ingest task: a dataset folder in any known format -> validated Parquet tables."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from disco.config import DataConfig
from disco.datasets import get_reader
from disco.errors import DataError
from disco.ingest import ingest
from disco.io import Manifest, atomic_path
from disco.paths import ROOT
from tasks.common import StageCache, link_artifacts, manifest, stage_dir, table_artifact


def resolve_data_path(path: str) -> Path:
    """A data path as given, else relative to the repository root (so presets can name ../shared/data)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (ROOT / p).resolve()


@task(name="ingest", cache_policy=StageCache(stage="ingest"), persist_result=True, result_serializer="json")
def ingest_task(out: str, data: DataConfig, data_hash: str) -> Manifest:
    """Read ``data`` with its format's reader, validate, and write turns/corpus/qrels Parquet tables.

    ``data_hash`` is the content hash of the input folder: it makes edits to the data invalidate the cache.
    """
    key, final = stage_dir("ingest", out, {"data": data, "data_hash": data_hash})
    reader = get_reader(data.format, resolve_data_path(data.path), **data.options)
    with atomic_path(final) as tmp:
        stats = ingest(reader, tmp, data.split, strict=data.strict)
    m = manifest("ingest", key, final, {
        "turns": ("turns.parquet", stats["turns"]),
        "corpus": ("corpus.parquet", stats["passages"]),
        "qrels": ("qrels.parquet", stats["qrels"]),
    }, stats)
    rows = [{"table": n, "rows": o.rows, "path": o.path} for n, o in m.outputs.items()]
    rows += [{"table": f"skipped: {k}", "rows": v, "path": stats["skipped_examples"][k]}
             for k, v in stats["skipped"].items()]
    table_artifact("ingest-summary", rows, f"{data.format} from {data.path}: {stats['conversations']} conversations, "
                                           f"splits {stats['splits']}")
    link_artifacts("ingest", m)
    return m


def dataset_hash(data: DataConfig) -> str:
    """Hash of the dataset files (sizes + mtimes for big files, content for small ones)."""
    import hashlib

    root = resolve_data_path(data.path)
    if not root.exists():
        raise DataError(root, "dataset folder does not exist")
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(root) if f != root else f.name).encode())
        if st.st_size < 64 << 20:
            h.update(f.read_bytes())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
