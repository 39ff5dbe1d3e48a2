"""Teacher runs: each teacher's rewrites through the frozen encoder -> top-k passages with scores, and the
fused teacher (Lupart et al., SIGIR 2025, sec. 3.2: the student learns these scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from core.errors import DiscoError
from core.parallel import bounds, distributed, pmap
from models.splade import SpladeConfig
from retrieval.index.encode import frozen_encoder
from retrieval.index.retrieve import retrieve
from retrieval.index.search import ImpactSearcher
from retrieval.runs import Fusion, fuse, rank

EMPTY_RUN = {"turn_id": pl.String, "doc_id": pl.String, "score": pl.Float64}


def teacher_runs(rewrites: pl.DataFrame, teachers: list[str], encoder: SpladeConfig, lucene: str | Path, k: int,
                 fusion: Fusion, progress: Callable | None = None, shard_turns: int = 100_000
                 ) -> tuple[pl.DataFrame, list[dict]]:
    """The runs of every teacher plus ``fused`` (one table, column ``system``) and a summary row per run.

    Each teacher's turns are retrieved in shards of ``shard_turns`` (:func:`retrieve_shard`, through
    :func:`core.parallel.pmap`: here, or as tasks on a cluster; the same shards give the same runs anywhere)."""
    missing = [t for t in teachers if t not in set(rewrites["teacher"])]
    if missing:
        raise DiscoError(f"teacher stage: no rewrites for {missing}; the rewrite stage produced "
                         f"{sorted(set(rewrites['teacher']))}")
    texts = {}
    for name in teachers:
        rows = rewrites.filter(pl.col("teacher") == name)
        texts[name] = list(zip(rows["turn_id"], rows["rewrite"]))
    shards = [(str(lucene), encoder, name, dict(texts[name][a:b]), k)
              for name in teachers for a, b in bounds(len(texts[name]), shard_turns)]
    if distributed():
        found = pmap(retrieve_shard, shards, "teacher-retrieve")
    else:  # here: one searcher for every shard, a progress bar per teacher
        searcher, found = ImpactSearcher(lucene), []
        for name in teachers:
            n, done = len(texts[name]), 0
            bar = progress(f"teacher-{name}-progress".lower(), f"teacher {name}: {n} rewrites", n) if progress else None
            for args in (s for s in shards if s[2] == name):
                found.append(retrieve_shard(*args, searcher=searcher,
                                            progress=(lambda d, _t, o=done: bar(o + d)) if bar else None))
                done += len(args[3])
            if bar:
                bar.close()
        searcher.close()
    runs, summary = [], []
    for name in teachers:
        parts = [r for args, r in zip(shards, found) if args[2] == name]
        run = rank(pl.concat(parts), name) if parts else rank(pl.DataFrame(schema=EMPTY_RUN), name)
        runs.append(run)
        summary.append(describe_run(run, name, len(texts[name])))
    all_runs = pl.concat(runs)
    fused = fuse(all_runs, fusion, "fused")
    summary.append(describe_run(fused, f"fused ({fusion})", len(rewrites["turn_id"].unique())))
    return pl.concat([all_runs, fused]), summary


def retrieve_shard(lucene: str, encoder: SpladeConfig, system: str, texts: dict[str, str], k: int,
                   searcher: ImpactSearcher | None = None, progress: Callable | None = None) -> pl.DataFrame:
    """One shard of one teacher: its rewrites (``{turn_id: text}``) through the frozen encoder, top-``k`` each."""
    own = searcher is None
    searcher = searcher or ImpactSearcher(lucene)
    try:
        return retrieve(frozen_encoder(encoder.model), searcher, texts, system=system, k=k,
                        max_length=encoder.query_max_length, batch_size=encoder.batch_size,
                        scale=encoder.quant_scale, progress=progress).run
    finally:
        if own:
            searcher.close()


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
