"""Teacher runs: each teacher's rewrites through the frozen encoder -> top-k passages with scores, and the
fused teacher (Lupart et al., SIGIR 2025, sec. 3.2: the student learns these scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from core.errors import DiscoError
from models.splade import SpladeConfig, SpladeEncoder
from retrieval.index.retrieve import retrieve
from retrieval.index.search import ImpactSearcher
from retrieval.runs import Fusion, fuse


def teacher_runs(rewrites: pl.DataFrame, teachers: list[str], encoder: SpladeConfig, lucene: str | Path, k: int,
                 fusion: Fusion, progress: Callable | None = None) -> tuple[pl.DataFrame, list[dict]]:
    """The runs of every teacher plus ``fused`` (one table, column ``system``) and a summary row per run."""
    missing = [t for t in teachers if t not in set(rewrites["teacher"])]
    if missing:
        raise DiscoError(f"teacher stage: no rewrites for {missing}; the rewrite stage produced "
                         f"{sorted(set(rewrites['teacher']))}")
    enc = SpladeEncoder(encoder.model, frozen=True)
    searcher = ImpactSearcher(lucene)
    runs, summary = [], []
    for name in teachers:
        rows = rewrites.filter(pl.col("teacher") == name)
        texts = dict(zip(rows["turn_id"], rows["rewrite"]))
        bar = progress(f"teacher-{name}-progress".lower(), f"teacher {name}: {len(texts)} rewrites",
                       len(texts)) if progress else None
        got = retrieve(enc, searcher, texts, system=name, k=k, max_length=encoder.query_max_length,
                       batch_size=encoder.batch_size, scale=encoder.quant_scale, progress=bar)
        if bar:
            bar.close()
        runs.append(got.run)
        summary.append(describe_run(got.run, name, len(texts)))
    searcher.close()
    all_runs = pl.concat(runs)
    fused = fuse(all_runs, fusion, "fused")
    summary.append(describe_run(fused, f"fused ({fusion})", len(rewrites["turn_id"].unique())))
    return pl.concat([all_runs, fused]), summary


def describe_run(run: pl.DataFrame, name: str, queries: int) -> dict:
    """Hits and score distribution of one run (top-1 and rank-11 medians: how peaked the teacher is)."""
    top1 = run.filter(pl.col("rank") == 1)["score"]
    r11 = run.filter(pl.col("rank") == 11)["score"]
    return {
        "teacher": name,
        "queries": queries,
        "queries_with_hits": run["turn_id"].n_unique(),
        "hits_per_query": round(len(run) / max(run["turn_id"].n_unique(), 1), 1),
        "top1_score_median": round(float(top1.median() or 0), 3),
        "rank11_score_median": round(float(r11.median() or 0), 3),
        "score_min": round(float(run["score"].min() or 0), 3),
        "score_max": round(float(run["score"].max() or 0), 3),
    }
