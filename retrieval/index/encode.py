"""The corpus through the frozen SPLADE document encoder: quantised impact vectors for Lucene, and the float
document vectors the distillation reads (Lupart et al., SIGIR 2025: documents are encoded once, frozen)."""

from __future__ import annotations

import json
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import schema
from core.errors import DiscoError
from core.io import write_parquet
from core.parallel import bounds, distributed, pmap
from models.splade import SpladeConfig, SpladeEncoder, impact_vector, vocab_tokens


def passage_input(title: str, text: str) -> str:
    """What the document encoder reads: "title. text" when there is a title."""
    return f"{title}. {text}" if title else text


def encode_shard(corpus_path: str, start: int, stop: int, encoder: SpladeConfig, out_file: str,
                 progress: Callable | None = None) -> str:
    """Passages ``[start, stop)`` of the corpus through the frozen encoder -> ``out_file`` (:data:`schema.DOC_VECTORS`).

    The unit of work that runs anywhere (:func:`core.parallel.pmap`): the same shard gives the same vectors
    whether it runs here or on a cluster worker. ``progress(done, total)`` follows the batches.
    """
    table = pq.read_table(corpus_path, columns=["doc_id", "title", "text"]).slice(start, stop - start)
    ids, titles, texts = (table.column(c).to_pylist() for c in ("doc_id", "title", "text"))
    reps = frozen_encoder(encoder.model).encode([passage_input(a, b) for a, b in zip(titles, texts)],
                                         encoder.doc_max_length, encoder.batch_size, progress)
    write_parquet(out_file, pa.Table.from_pydict(
        {"doc_id": ids, "term_ids": [t.tolist() for t, _ in reps], "weights": [w.tolist() for _, w in reps]},
        schema=schema.DOC_VECTORS))
    return out_file


@lru_cache(maxsize=1)
def frozen_encoder(model: str) -> SpladeEncoder:
    """One frozen encoder per process (a cluster worker encodes many shards with it)."""
    return SpladeEncoder(model, frozen=True)


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
    tokens = vocab_tokens(frozen_encoder(encoder.model).tokenizer)
    bar = progress("index-progress", f"encoding {total} passages", total) if progress else None
    n_docs, n_sum, n_max, t0 = 0, 0, 0, time.perf_counter()  # running sums: no per-passage list in memory
    (out / "collection").mkdir(parents=True)
    parts = out / "parts"  # one vector file per shard, inside the stage's temporary folder
    shards = [(str(corpus_path), a, b, encoder, str(parts / f"part-{i:05d}.parquet"))
              for i, (a, b) in enumerate(bounds(total, shard_size))]
    if distributed():
        files = pmap(encode_shard, shards, "index-encode")
    else:  # here: progress within each shard
        files = [encode_shard(*args, progress=(lambda d, _t, a=args[1]: bar(a + d)) if bar else None)
                 for args in shards]
    with pq.ParquetWriter(out / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as vectors:
        for shard, file in enumerate(files):
            part = pq.read_table(file)
            with open(out / "collection" / f"docs-{shard:05d}.jsonl", "w", encoding="utf-8") as f:
                for doc_id, t, w in zip(*(part.column(c).to_pylist() for c in ("doc_id", "term_ids", "weights"))):
                    vec = impact_vector(np.asarray(t, dtype=np.int32), np.asarray(w, dtype=np.float32), tokens,
                                        encoder.quant_scale)
                    f.write(json.dumps({"id": doc_id, "contents": "", "vector": vec}) + "\n")
                    n_docs, n_sum, n_max = n_docs + 1, n_sum + len(vec), max(n_max, len(vec))
            vectors.write_table(part)
    shutil.rmtree(parts)
    if bar:
        bar.close()
    encode_s = time.perf_counter() - t0
    return {
        "passages": total,
        "doc_terms_mean": n_sum / n_docs if n_docs else 0.0,
        "doc_terms_max": n_max,
        "encode_s": round(encode_s, 2),
        "passages_per_s": round(total / max(encode_s, 1e-9), 1),
        "encoder": encoder.model,
    }
