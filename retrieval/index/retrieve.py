"""Encode queries with a SPLADE encoder, quantise them like the documents, and search the impact index."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import polars as pl

from retrieval.index.search import ImpactSearcher
from retrieval.runs import rank
from models.splade import SpladeEncoder, impact_vector, quantise_sparse, vocab_tokens


@dataclass
class Retrieved:
    run: pl.DataFrame  # core.schema.RUNS rows
    query_terms: list[np.ndarray] = field(default_factory=list)  # non-zero (quantised) term ids per query
    encode_s: float = 0.0
    search_s: float = 0.0


def _tokens(encoder: SpladeEncoder) -> list[str]:
    """The id -> token table, built once per encoder (30,522 entries: too slow to rebuild per query)."""
    if getattr(encoder, "_vocab_tokens", None) is None:
        encoder._vocab_tokens = vocab_tokens(encoder.tokenizer)
    return encoder._vocab_tokens


def retrieve(
    encoder: SpladeEncoder,
    searcher: ImpactSearcher,
    texts: dict[str, str],
    *,
    system: str,
    k: int,
    max_length: int,
    batch_size: int = 32,
    scale: int = 100,
    progress: Callable[[int, int], None] | None = None,
    truncation_side: str = "right",
) -> Retrieved:
    """Top-``k`` passages per query id. Scores are Lucene's integer impacts / ``scale**2`` (float dot product)."""
    qids = list(texts)
    t0 = time.perf_counter()
    vecs = encoder.encode([texts[q] for q in qids], max_length, batch_size, progress, truncation_side)
    t1 = time.perf_counter()
    tokens = _tokens(encoder)
    impacts = {q: impact_vector(ids, w, tokens, scale) for q, (ids, w) in zip(qids, vecs)}
    hits = searcher.search({q: v for q, v in impacts.items() if v}, k)
    t2 = time.perf_counter()
    rows = [(q, d, s / scale**2) for q, docs in hits.items() for d, s in docs]
    run = pl.DataFrame(rows, schema={"turn_id": pl.String, "doc_id": pl.String, "score": pl.Float64}, orient="row")
    return Retrieved(
        run=rank(run, system),
        query_terms=[quantise_sparse(ids, w, scale)[0] for ids, w in vecs],
        encode_s=t1 - t0,
        search_s=t2 - t1,
    )
