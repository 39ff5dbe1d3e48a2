"""The corpus through the frozen SPLADE document encoder: quantised impact vectors for Lucene, and the float
document vectors the distillation reads (Lupart et al., SIGIR 2025: documents are encoded once, frozen)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import schema
from core.errors import DiscoError
from models.splade import SparseVec, SpladeConfig, SpladeEncoder
from retrieval.index.shards import encode_shards


def passage_input(title: str, text: str) -> str:
    """What the document encoder reads: "title. text" when there is a title."""
    return f"{title}. {text}" if title else text


def corpus_passages(corpus: pq.ParquetFile) -> Iterator[tuple[str, str]]:
    """(doc_id, encoder input) of each passage of an ingested ``corpus.parquet``, in order."""
    for batch in corpus.iter_batches(batch_size=10_000, columns=["doc_id", "title", "text"]):
        ids, titles, texts = (batch.column(c).to_pylist() for c in ("doc_id", "title", "text"))
        yield from zip(ids, (passage_input(a, b) for a, b in zip(titles, texts)))


def vectors_table(ids: list[str], reps: list[SparseVec]) -> pa.Table:
    """:data:`schema.DOC_VECTORS` rows built from the numpy arrays directly (no Python float per weight)."""
    offsets = np.zeros(len(reps) + 1, dtype=np.int32)
    np.cumsum([len(t) for t, _ in reps], out=offsets[1:])
    terms = np.concatenate([t for t, _ in reps]) if reps else np.zeros(0, np.int32)
    weights = np.concatenate([w for _, w in reps]) if reps else np.zeros(0, np.float32)
    return pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.ListArray.from_arrays(pa.array(offsets), pa.array(terms, pa.int32())),
         pa.ListArray.from_arrays(pa.array(offsets), pa.array(weights, pa.float32()))], schema=schema.DOC_VECTORS)


def encode_corpus(corpus_path: str | Path, encoder: SpladeConfig, out: Path, shard_size: int,
                  progress: Callable | None = None) -> dict:
    """Write ``out/collection/docs-*.jsonl`` (JsonVectorCollection, weights x ``quant_scale``, by
    :func:`retrieval.index.shards.encode_shards`, as ``disco encode`` does) and ``out/doc_vectors.parquet``
    (:data:`schema.DOC_VECTORS`); return counts and timings.

    ``progress(key, description, total)`` makes a progress bar.
    """
    corpus = pq.ParquetFile(corpus_path)
    total = corpus.metadata.num_rows
    if total == 0:
        raise DiscoError("index: the dataset has no passages, so retrieval stages cannot run; its turns and "
                         "rewrites are ready: use --stage rewrite")
    enc = SpladeEncoder(encoder.model, frozen=True)
    bar = progress("index-progress", f"encoding {total} passages", total) if progress else None
    with pq.ParquetWriter(out / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as vectors:
        def write_vectors(ids: list[str], reps: list) -> None:
            vectors.write_table(vectors_table(ids, reps))

        stats = encode_shards(corpus_passages(corpus), enc, out / "collection", max_length=encoder.doc_max_length,
                              batch_size=encoder.batch_size, scale=encoder.quant_scale, shard_size=shard_size,
                              on_shard=write_vectors, progress=bar)
    if bar:
        bar.close()
    return {
        "passages": total,
        "doc_terms_mean": stats["doc_terms_mean"],
        "doc_terms_max": stats["doc_terms_max"],
        "encode_s": stats["encode_s"],
        "passages_per_s": round(total / max(stats["encode_s"], 1e-9), 1),
        "encoder": encoder.model,
    }
