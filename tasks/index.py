"""Index task: frozen SPLADE document vectors -> JsonVectorCollection -> Lucene impact index (Pyserini)."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task

from disco import schema
from disco.config import IndexConfig
from disco.errors import DiscoError
from disco.index.build import build_index
from disco.io import Manifest, atomic_path
from models.splade import SpladeConfig, SpladeEncoder, impact_vector, vocab_tokens
from tasks.common import Progress, StageCache, link_artifacts, manifest, stage_dir, table_artifact


def passage_input(title: str, text: str) -> str:
    """What the document encoder reads: "title. text" when there is a title."""
    return f"{title}. {text}" if title else text


@task(name="index", cache_policy=StageCache(stage="index"), persist_result=True, result_serializer="json")
def index_task(out: str, encoder: SpladeConfig, index: IndexConfig, data: Manifest) -> Manifest:
    key, final = stage_dir("index", out, {"encoder": encoder, "index": index, "data": data})
    corpus = pq.ParquetFile(data["corpus"])
    total = corpus.metadata.num_rows
    if total == 0:
        raise DiscoError(f"index: the dataset ({data.stats.get('format')}) has no passages, so retrieval stages "
                         "cannot run; its turns and rewrites are ready: use --stage rewrite")
    enc = SpladeEncoder(encoder.model, frozen=True)
    tokens = vocab_tokens(enc.tokenizer)
    bar = Progress("index-progress", f"encoding {total} passages", total)
    n_terms, done, t0 = [], 0, time.perf_counter()
    with atomic_path(final) as tmp:
        (tmp / "collection").mkdir(parents=True)
        with pq.ParquetWriter(tmp / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as vectors:
            for shard, batch in enumerate(corpus.iter_batches(batch_size=index.shard_size)):
                ids, titles, texts = (batch.column(c).to_pylist() for c in ("doc_id", "title", "text"))
                reps = enc.encode([passage_input(a, b) for a, b in zip(titles, texts)], encoder.doc_max_length,
                                  encoder.batch_size, lambda d, _t: bar(done + d))
                done += len(ids)
                with open(tmp / "collection" / f"docs-{shard:05d}.jsonl", "w", encoding="utf-8") as f:
                    for doc_id, (t, w) in zip(ids, reps):
                        vec = impact_vector(t, w, tokens, encoder.quant_scale)
                        f.write(json.dumps({"id": doc_id, "contents": "", "vector": vec}) + "\n")
                        n_terms.append(len(vec))
                vectors.write_table(pa.Table.from_pydict(
                    {"doc_id": ids, "term_ids": [t.tolist() for t, _ in reps], "weights": [w.tolist() for _, w in reps]},
                    schema=schema.DOC_VECTORS))
        encode_s = time.perf_counter() - t0
        bar.close()
        build_index(tmp / "collection", tmp / "lucene", threads=index.threads)
        index_s = time.perf_counter() - t0 - encode_s
    stats = {
        "passages": total,
        "doc_terms_mean": float(np.mean(n_terms)) if n_terms else 0.0,
        "doc_terms_max": int(np.max(n_terms)) if n_terms else 0,
        "encode_s": round(encode_s, 2),
        "passages_per_s": round(total / max(encode_s, 1e-9), 1),
        "lucene_s": round(index_s, 2),
        "encoder": encoder.model,
    }
    m = manifest("index", key, final, {
        "lucene": ("lucene", None), "collection": ("collection", total), "doc_vectors": ("doc_vectors.parquet", total),
    }, stats)
    table_artifact("index-summary", [stats], f"impact index of {total} passages with {encoder.model}")
    link_artifacts("index", m)
    return m
