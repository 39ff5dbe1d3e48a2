"""Runs (ranked lists per turn): TREC files and teacher fusion.

A run is a table of (turn_id, doc_id, system, score, rank) rows, ``core.schema.RUNS``, ranked by
:func:`retrieval.index.ranking.rank`.
Fusion (DiSCo multi-teacher, Lupart et al. SIGIR 2025, sec. 3.3): each (turn, passage) gets the mean of the raw
scores of the teachers that retrieved it (``mean_score``, the authors' choice), or the mean of the per-teacher
softmax distributions over each turn's retrieved passages (``mean_softmax``; a passage a teacher missed counts 0).

``mean_softmax`` stores the *log* of the fused probability as the score: the distillation loss takes a softmax
over the scores of a turn's sampled passages, and softmax(log p) over any subset is p renormalised on it, i.e. the
fused distribution itself. (Storing p as a score, as a first version did, made the teacher distribution nearly
uniform, as every p is in [0, 1]; students distilled from it collapsed to ~6-9 query terms, see docs/results.md.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import polars as pl

from core.io import atomic_path
from retrieval.index.ranking import rank

Fusion = Literal["mean_score", "mean_softmax"]


def fuse(runs: pl.DataFrame, method: Fusion = "mean_score", name: str = "fused",
         n_systems: int | None = None) -> pl.DataFrame:
    """Fuse all systems in ``runs`` into one run called ``name``. ``n_systems``: how many systems ``mean_softmax``
    averages over (default: those in ``runs``; give it when ``runs`` holds only some turns of the systems)."""
    if method == "mean_score":
        fused = runs.group_by(["turn_id", "doc_id"]).agg(pl.col("score").mean())
    else:  # in log space throughout (log-sum-exp), so no probability underflows to log(0)
        n_systems = n_systems or runs["system"].n_unique()
        shifted = pl.col("score") - pl.col("score").max().over(["turn_id", "system"])
        log_p = runs.with_columns(
            (shifted - shifted.exp().sum().over(["turn_id", "system"]).log()).alias("lp"))
        top = pl.col("lp").max()
        fused = log_p.group_by(["turn_id", "doc_id"]).agg(
            (top + (pl.col("lp") - top).exp().sum().log() - math.log(n_systems)).alias("score"))
    return rank(fused, name)


def write_trec(df: pl.DataFrame, path: Path, tag: str) -> Path:
    """Write a TREC run file: ``qid Q0 docid rank score tag``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        trec_lines(f, df.sort(["turn_id", "rank"]), tag)
    return path


def trec_lines(f, df: pl.DataFrame, tag: str) -> None:
    """Append ``df``'s rows, in their order, to the open TREC file ``f`` (a run written chunk by chunk)."""
    for t, d, r, s in df.select(["turn_id", "doc_id", "rank", "score"]).iter_rows():
        f.write(f"{t} Q0 {d} {r} {s:.6f} {tag}\n")
