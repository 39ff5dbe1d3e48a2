"""Stage 3, index: the corpus through the frozen document encoder -> Lucene impact index (Pyserini)."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from core.errors import DiscoError
from core.io import Manifest
from models.splade_config import SpladeConfig
from stages.base import Artifact, Stage


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int = 2
    shard_size: int = 100_000  # passages per JsonVectorCollection file


def run(out: Path, work: Path, progress, encoder: SpladeConfig, index: IndexConfig, ingest: Manifest) -> dict:
    """``collection/`` (JsonVectorCollection), ``doc_vectors.parquet`` and the Lucene impact index ``lucene/``."""
    # imported here, not at the top: a cached run reads this module for the config and the key, and must not
    # pay for torch, transformers and Pyserini (tests/disco/test_cached_run.py)
    from retrieval.index.build import build_index
    from retrieval.index.encode import encode_corpus

    if ingest.outputs["corpus"].rows == 0:  # a reader without a corpus (CANARD, CAsT without its collection, ...)
        fmt = ingest.stats.get("format")
        hint = "; CANARD: options.answer_passages=true makes its answer spans a corpus" if fmt == "canard" else ""
        raise DiscoError(f"index: the {fmt} dataset has no passages, so it can neither be searched nor train a "
                         f"student{hint} (its turns and rewrites alone: --stage rewrite)")
    stats = encode_corpus(ingest["corpus"], encoder, out, index.shard_size, progress)
    t0 = time.perf_counter()
    build_index(out / "collection", out / "lucene", threads=index.threads)
    return {**stats, "lucene_s": round(time.perf_counter() - t0, 2)}


def artifacts(m: Manifest) -> list[Artifact]:
    s = {k: v for k, v in m.stats.items() if k != "stage_seconds"}
    return [Artifact("table", "index-summary", [s], f"impact index of {s['passages']} passages with {s['encoder']}")]


STAGE = Stage(
    name="index",
    summary="frozen SPLADE document vectors, quantised (x100), Lucene impact index via Pyserini",
    upstream=("ingest",),
    reads=("encoder", "index"),
    outputs={"lucene": "lucene", "collection": "collection", "doc_vectors": "doc_vectors.parquet"},
    rows={"collection": "passages", "doc_vectors": "passages"},
    run=run,
    artifacts=artifacts,
    reads_outputs={"ingest": ("corpus",)},  # a dataset that grows by conversations keeps its index
)
