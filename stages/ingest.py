"""Stage 1, ingest: a dataset folder in any known format -> validated Parquet tables (turns, corpus, qrels)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.errors import DataError
from core.io import Manifest
from core.paths import DEMO_DATA, ROOT
from retrieval.datasets import get_reader
from retrieval.ingest import SplitConfig, ingest
from stages.base import Artifact, Stage


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = "disco"
    path: str = str(DEMO_DATA)
    options: dict[str, Any] = {}
    split: SplitConfig = SplitConfig()
    strict: bool = True  # False: skip bad records, count them in the ingest artifact
    # Whom the student learns from on a pooled training dataset's turns (`extra_data` only; none:
    # distill.learn_from), e.g. "human" for CANARD's rewrites beside MTRAG-UN, which has none. Its teacher stage
    # computes this teacher only.
    learn_from: str | None = None


def resolve_data_path(path: str) -> Path:
    """A data path as given, else relative to the repository root (so presets can name ../shared/data)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (ROOT / p).resolve()


def dataset_hash(data: DataConfig) -> str:
    """Hash of the dataset files (sizes + mtimes for big files, content for small ones)."""
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


def run(out: Path, work: Path, progress, data: DataConfig) -> dict:
    """Read ``data`` with its format's reader, validate, and write turns/corpus/qrels Parquet tables."""
    reader = get_reader(data.format, resolve_data_path(data.path), **data.options)
    return ingest(reader, out, data.split, strict=data.strict)


def artifacts(m: Manifest) -> list[Artifact]:
    s = m.stats
    rows = [{"table": n, "rows": o.rows, "path": o.path} for n, o in m.outputs.items()]
    rows += [{"table": f"skipped: {k}", "rows": v, "path": s["skipped_examples"][k]} for k, v in s["skipped"].items()]
    return [Artifact("table", "ingest-summary", rows,
                     f"{s.get('format')}: {s['conversations']} conversations, splits {s['splits']}")]


STAGE = Stage(
    name="ingest",
    summary="dataset -> validated Parquet tables; bad input is a clear error naming file and line",
    upstream=(),
    reads=("data",),
    outputs={"turns": "turns.parquet", "corpus": "corpus.parquet", "qrels": "qrels.parquet"},
    rows={"turns": "turns", "corpus": "passages", "qrels": "qrels"},
    run=run,
    external_files=lambda data: {"dataset": dataset_hash(data)},
    artifacts=artifacts,
)
