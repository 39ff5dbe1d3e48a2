"""Encode queries with a SPLADE encoder, quantise them like the documents, and search the impact index.

The queries are encoded in one call (as before: the encoder's length-sorted batches depend on the whole input, so
the vectors do not depend on ``chunk``), then searched ``chunk`` at a time in turn-id order. Each chunk's hits
become a ranked run at once; with ``write`` every chunk goes there as soon as it is ranked and the returned run is
empty, so a large run (100k turns x k=1000) never sits in Python memory at once. Chunks are in turn-id order and
:func:`retrieval.index.ranking.rank` sorts by turn id first, so the written chunks, one after the other, are exactly the
run one unchunked call would return.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import polars as pl

from retrieval.index.search import ImpactSearcher
from retrieval.index.ranking import rank
from models.splade import SpladeEncoder, impact_vector, quantise_sparse, vocab_tokens

CHUNK = 1024  # queries searched and turned into rows at a time (1M rows at k=1000)
RUN_COLUMNS = {"turn_id": pl.String, "doc_id": pl.String, "score": pl.Float64}


@dataclass
class Retrieved:
    run: pl.DataFrame  # core.schema.RUNS rows
    query_terms: list[np.ndarray] = field(default_factory=list)  # non-zero (quantised) term ids per query
    encode_s: float = 0.0
    search_s: float = 0.0
    rows: int = 0  # rows of the run, also when they were written instead of returned


def encoder_tokens(encoder: SpladeEncoder) -> list[str]:
    """The id -> token table, built once per encoder (30,522 entries: too slow to rebuild per query)."""
    if getattr(encoder, "_vocab_tokens", None) is None:
        encoder._vocab_tokens = vocab_tokens(encoder.tokenizer)
    return encoder._vocab_tokens


def hits_run(hits: dict[str, list[tuple[str, float]]], system: str, scale: int) -> pl.DataFrame:
    """A searcher's hits as a ranked run. Scores are the exact integer dot products / ``scale**2``: Lucene sums
    in float32 and sometimes answers 22.999998 for 23, so its scores are rounded to the integer they stand for
    (exact while a score stays under 2**24), which makes both searchers' runs identical."""
    turns, docs, scores = [], [], []
    for q, found in hits.items():
        turns += [q] * len(found)
        docs += [d for d, _ in found]
        scores += [round(s) / scale**2 for _, s in found]
    return rank(pl.DataFrame({"turn_id": turns, "doc_id": docs, "score": scores}, schema=RUN_COLUMNS), system)


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
    chunk: int = CHUNK,
    write: Callable[[pl.DataFrame], None] | None = None,
) -> Retrieved:
    """Top-``k`` passages per query id (``searcher``: Lucene's :class:`ImpactSearcher` or the equivalent
    :class:`retrieval.index.sparse.SparseSearcher`), searched ``chunk`` queries at a time; with ``write``, each
    chunk's ranked run is passed to it and the returned run is empty."""
    qids = list(texts)
    t0 = time.perf_counter()
    vecs = encoder.encode([texts[q] for q in qids], max_length, batch_size, progress, truncation_side)
    t1 = time.perf_counter()
    tokens = encoder_tokens(encoder)
    vec_of = dict(zip(qids, vecs))
    order = sorted(qids)
    parts, rows = [], 0
    for start in range(0, len(order), max(int(chunk), 1)):
        impacts = {q: impact_vector(*vec_of[q], tokens, scale) for q in order[start:start + chunk]}
        part = hits_run(searcher.search({q: v for q, v in impacts.items() if v}, k), system, scale)
        rows += part.height
        if write is not None:
            write(part)
        else:
            parts.append(part)
    t2 = time.perf_counter()
    run = pl.concat(parts) if parts else hits_run({}, system, scale)
    return Retrieved(run=run, query_terms=[quantise_sparse(ids, w, scale)[0] for ids, w in vecs],
                     encode_s=t1 - t0, search_s=t2 - t1, rows=rows)
