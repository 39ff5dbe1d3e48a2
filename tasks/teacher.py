"""Teacher task: each teacher's rewrites through the frozen encoder -> top-k runs; fused teachers."""

from __future__ import annotations

import polars as pl
from prefect import task

from disco.config import TeacherConfig
from disco.errors import DiscoError
from disco.index.retrieve import retrieve
from disco.index.search import ImpactSearcher
from disco.io import Manifest, atomic_path, write_parquet
from disco.runs import fuse
from models.splade import SpladeConfig, SpladeEncoder
from tasks.common import Progress, StageCache, link_artifacts, manifest, stage_dir, table_artifact


@task(name="teacher", cache_policy=StageCache(stage="teacher"), persist_result=True, result_serializer="json")
def teacher_task(out: str, encoder: SpladeConfig, teacher: TeacherConfig, rewrites: Manifest,
                 index: Manifest) -> Manifest:
    key, final = stage_dir("teacher", out, {"encoder": encoder, "teacher": teacher, "rewrites": rewrites,
                                            "index": index})
    table = pl.read_parquet(rewrites["rewrites"])
    missing = [t for t in teacher.teachers if t not in set(table["teacher"])]
    if missing:
        raise DiscoError(f"teacher stage: no rewrites for {missing}; the rewrite stage produced "
                         f"{sorted(set(table['teacher']))}")
    enc = SpladeEncoder(encoder.model, frozen=True)
    searcher = ImpactSearcher(index["lucene"])
    runs, summary = [], []
    for name in teacher.teachers:
        rows = table.filter(pl.col("teacher") == name)
        texts = dict(zip(rows["turn_id"], rows["rewrite"]))
        bar = Progress(f"teacher-{name}-progress".lower(), f"teacher {name}: {len(texts)} rewrites", len(texts))
        got = retrieve(enc, searcher, texts, system=name, k=teacher.k, max_length=encoder.query_max_length,
                       batch_size=encoder.batch_size, scale=encoder.quant_scale, progress=bar)
        bar.close()
        runs.append(got.run)
        summary.append(_describe(got.run, name, len(texts)))
    searcher.close()
    all_runs = pl.concat(runs)
    fused = fuse(all_runs, teacher.fusion, "fused")
    summary.append(_describe(fused, f"fused ({teacher.fusion})", len(table["turn_id"].unique())))
    with atomic_path(final) as tmp:
        tmp.mkdir()
        write_parquet(tmp / "runs.parquet", pl.concat([all_runs, fused]).to_arrow())
    m = manifest("teacher", key, final, {"runs": ("runs.parquet", len(all_runs) + len(fused))},
                 {"teachers": summary})
    table_artifact("teacher-scores", summary, "teacher runs: retrieved passages and score distribution per teacher")
    link_artifacts("teacher", m)
    return m


def _describe(run: pl.DataFrame, name: str, queries: int) -> dict:
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
