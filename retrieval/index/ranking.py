"""A searcher's hits as a ranked run: sorted by score within each turn, ranks numbered from 1 (``core.schema.RUNS``).

Here, below :mod:`retrieval.runs` (fusion and TREC files, which rank with it), so that the index's retrieval
(retrieval/index/retrieve.py) needs nothing from the folder above it: no folder imports its parent back.
"""

from __future__ import annotations

import polars as pl

from core import schema


def rank(df: pl.DataFrame, system: str | None = None) -> pl.DataFrame:
    """Sort by score within each turn (ties by doc id) and number ranks from 1."""
    df = df.sort(["turn_id", "score", "doc_id"], descending=[False, True, False])
    df = df.with_columns(pl.int_range(1, pl.len() + 1).over("turn_id").cast(pl.Int32).alias("rank"))
    if system is not None:
        df = df.with_columns(pl.lit(system).alias("system"))
    return df.select([f.name for f in schema.RUNS])
