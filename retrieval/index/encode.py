"""The corpus through the frozen SPLADE document encoder: quantised impact vectors for Lucene, and the float
document vectors the distillation reads (Lupart et al., SIGIR 2025: documents are encoded once, frozen)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import schema
from core.errors import DiscoError
from models.splade import SpladeConfig, SpladeEncoder, impact_vector, vocab_tokens


def passage_input(title: str, text: str) -> str:
    """What the document encoder reads: "title. text" when there is a title."""
    return f"{title}. {text}" if title else text


def encode_corpus(corpus_path: str | Path, encoder: SpladeConfig, out: Path, shard_size: int,
                  progress: Callable | None = None) -> dict:
    """Write ``out/collection/docs-*.jsonl`` (JsonVectorCollection, weights x ``quant_scale``) and
    ``out/doc_vectors.parquet`` (:data:`schema.DOC_VECTORS`); return counts and timings.

    ``progress(key, description, total)`` makes a progress bar.
    """
    corpus = pq.ParquetFile(corpus_path)
    total = corpus.metadata.num_rows
    if total == 0:
        raise DiscoError("index: the dataset has no passages, so retrieval stages cannot run; its turns and "
                         "rewrites are ready: use --stage rewrite")
    enc = SpladeEncoder(encoder.model, frozen=True)
    tokens = vocab_tokens(enc.tokenizer)
    bar = progress("index-progress", f"encoding {total} passages", total) if progress else None
    n_terms, done, t0 = [], 0, time.perf_counter()
    (out / "collection").mkdir(parents=True)
    with pq.ParquetWriter(out / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as vectors:
        for shard, batch in enumerate(corpus.iter_batches(batch_size=shard_size)):
            ids, titles, texts = (batch.column(c).to_pylist() for c in ("doc_id", "title", "text"))
            reps = enc.encode([passage_input(a, b) for a, b in zip(titles, texts)], encoder.doc_max_length,
                              encoder.batch_size, (lambda d, _t: bar(done + d)) if bar else None)
            done += len(ids)
            with open(out / "collection" / f"docs-{shard:05d}.jsonl", "w", encoding="utf-8") as f:
                for doc_id, (t, w) in zip(ids, reps):
                    vec = impact_vector(t, w, tokens, encoder.quant_scale)
                    f.write(json.dumps({"id": doc_id, "contents": "", "vector": vec}) + "\n")
                    n_terms.append(len(vec))
            vectors.write_table(pa.Table.from_pydict(
                {"doc_id": ids, "term_ids": [t.tolist() for t, _ in reps], "weights": [w.tolist() for _, w in reps]},
                schema=schema.DOC_VECTORS))
    if bar:
        bar.close()
    encode_s = time.perf_counter() - t0
    return {
        "passages": total,
        "doc_terms_mean": float(np.mean(n_terms)) if n_terms else 0.0,
        "doc_terms_max": int(np.max(n_terms)) if n_terms else 0,
        "encode_s": round(encode_s, 2),
        "passages_per_s": round(total / max(encode_s, 1e-9), 1),
        "encoder": encoder.model,
    }
