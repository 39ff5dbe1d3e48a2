"""Stage 4, teacher: each teacher's rewrites through the frozen encoder -> top-k runs with scores; fused."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import BaseModel, Field

from core.io import Manifest, write_parquet
from models.splade import SpladeConfig
from retrieval.runs import Fusion
from retrieval.teachers import teacher_runs
from stages.base import Artifact, Stage


class TeacherConfig(BaseModel):
    """Which teacher runs are computed (whom the student learns from is ``distill.teacher``)."""

    teachers: list[str] = ["human", "llm"]  # "human" = the dataset's rewrites; others name rewrite teachers
    k: int = 1000
    fusion: Fusion = "mean_score"
    shard_turns: int = Field(100_000, description="turns per retrieval shard (a task each on a cluster)")


def run(out: Path, work: Path, progress, encoder: SpladeConfig, teacher: TeacherConfig, rewrite: Manifest,
        index: Manifest) -> dict:
    """``runs.parquet``: every teacher's top-k run and the fused one (column ``system``)."""
    runs, summary = teacher_runs(pl.read_parquet(rewrite["rewrites"]), teacher.teachers, encoder, index["lucene"],
                                 teacher.k, teacher.fusion, progress, teacher.shard_turns)
    write_parquet(out / "runs.parquet", runs.to_arrow())
    return {"teachers": summary, "rows": len(runs)}


def artifacts(m: Manifest) -> list[Artifact]:
    return [Artifact("table", "teacher-scores", m.stats["teachers"],
                     "teacher runs: retrieved passages and score distribution per teacher")]


STAGE = Stage(
    name="teacher",
    summary="each teacher's rewrites through the frozen encoder -> top-k runs with scores; fused teachers",
    upstream=("rewrite", "index"),
    reads=("encoder", "teacher"),
    outputs={"runs": "runs.parquet"},
    rows={"runs": "rows"},
    run=run,
    artifacts=artifacts,
)
