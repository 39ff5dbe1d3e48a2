"""The corpus through the frozen SPLADE document encoder: quantised impact vectors for Lucene, and the float
document vectors the distillation reads (Lupart et al., SIGIR 2025: documents are encoded once, frozen)."""

from __future__ import annotations

import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import schema
from core.errors import DiscoError
from core.io import atomic_path
from core.parallel import bounds, distributed, pmap
from models.splade import SparseVec, SpladeConfig, SpladeEncoder, vocab_tokens
from retrieval.index.shards import ENCODE_CHUNK, encode_shards, shard_name, write_lines


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


@lru_cache(maxsize=1)
def frozen_encoder(model: str) -> SpladeEncoder:
    """One frozen encoder per process (a cluster worker encodes many shards with it)."""
    return SpladeEncoder(model, frozen=True)


def encode_shard(corpus_path: str, start: int, stop: int, encoder: SpladeConfig, out_file: str) -> str:
    """Passages ``[start, stop)`` of the corpus -> ``out_file`` (:data:`schema.DOC_VECTORS`): the unit of work
    that runs on a cluster worker (:func:`core.parallel.pmap`); the same shard gives the same vectors anywhere."""
    table = pq.read_table(corpus_path, columns=["doc_id", "title", "text"]).slice(start, stop - start)
    enc = frozen_encoder(encoder.model)
    with atomic_path(out_file) as tmp, pq.ParquetWriter(tmp, schema.DOC_VECTORS, compression="zstd") as w:
        for a in range(0, table.num_rows, ENCODE_CHUNK):  # the chunks the local path encodes: the same batches
            part = table.slice(a, ENCODE_CHUNK)
            ids, titles, texts = (part.column(c).to_pylist() for c in ("doc_id", "title", "text"))
            reps = enc.encode([passage_input(x, y) for x, y in zip(titles, texts)], encoder.doc_max_length,
                              encoder.batch_size)
            w.write_table(vectors_table(ids, reps))
    return out_file


def table_vectors(part: pa.Table) -> list[SparseVec]:
    """The (term ids, weights) arrays of each row of a :data:`schema.DOC_VECTORS` table, as numpy views (no Python
    number per weight)."""
    terms, weights = (part.column(c).combine_chunks() for c in ("term_ids", "weights"))
    offsets = terms.offsets.to_numpy()
    t = terms.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    w = weights.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return [(t[a:b], w[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def _encode_distributed(corpus_path: str | Path, encoder: SpladeConfig, out: Path, total: int,
                        shard_size: int) -> dict:
    """Shards encoded as cluster tasks, then written here into the same collection files as the local path."""
    parts = out / "parts"  # one vector file per shard, inside the stage's temporary folder
    shards = [(str(corpus_path), a, b, encoder, str(parts / f"part-{i:05d}.parquet"))
              for i, (a, b) in enumerate(bounds(total, shard_size))]
    files = pmap(encode_shard, shards, "index-encode")
    tokens = vocab_tokens(frozen_encoder(encoder.model).tokenizer)
    (out / "collection").mkdir(parents=True, exist_ok=True)
    n_terms: list[int] = []
    with pq.ParquetWriter(out / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as vectors:
        for i, file in enumerate(files):
            path, source = out / "collection" / shard_name(i), pq.ParquetFile(file)
            with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
                for batch in source.iter_batches(batch_size=ENCODE_CHUNK):
                    part = pa.Table.from_batches([batch], schema=schema.DOC_VECTORS)
                    n_terms += write_lines(f, part.column("doc_id").to_pylist(), table_vectors(part), tokens,
                                           encoder.quant_scale)
                    vectors.write_table(part)
    shutil.rmtree(parts)
    return {"doc_terms_mean": sum(n_terms) / len(n_terms) if n_terms else 0.0, "doc_terms_max": max(n_terms, default=0)}


def encode_corpus(corpus_path: str | Path, encoder: SpladeConfig, out: Path, shard_size: int,
                  progress: Callable | None = None) -> dict:
    """Write ``out/collection/docs-*.jsonl`` (JsonVectorCollection, weights x ``quant_scale``, by
    :func:`retrieval.index.shards.encode_shards`, as ``disco encode`` does; on a cluster, shard by shard as tasks)
    and ``out/doc_vectors.parquet`` (:data:`schema.DOC_VECTORS`); return counts and timings.

    ``progress(key, description, total)`` makes a progress bar.
    """
    corpus = pq.ParquetFile(corpus_path)
    total = corpus.metadata.num_rows
    if total == 0:
        raise DiscoError("index: the dataset has no passages, so retrieval stages cannot run; its turns and "
                         "rewrites are ready: use --stage rewrite")
    if distributed():
        t0 = time.perf_counter()
        stats = _encode_distributed(corpus_path, encoder, out, total, shard_size)
        stats["encode_s"] = round(time.perf_counter() - t0, 2)
    else:
        enc = frozen_encoder(encoder.model)
        bar = progress("index-progress", f"encoding {total} passages", total) if progress else None
        with pq.ParquetWriter(out / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as vectors:
            def write_vectors(ids: list[str], reps: list) -> None:
                vectors.write_table(vectors_table(ids, reps))

            stats = encode_shards(corpus_passages(corpus), enc, out / "collection",
                                  max_length=encoder.doc_max_length, batch_size=encoder.batch_size,
                                  scale=encoder.quant_scale, shard_size=shard_size, on_shard=write_vectors,
                                  progress=bar)
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
