"""Stage 4, teacher: each teacher's rewrites through the frozen encoder -> top-k runs with scores; fused."""

from __future__ import annotations

from pathlib import Path

import re

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.io import Manifest
from models.splade_config import SpladeConfig
from retrieval.index.sparse import Backend
from retrieval.runs import Fusion
from stages.base import Artifact, Stage


class TeacherConfig(BaseModel):
    """Which teacher runs are computed (``systems``; whom the student learns from is ``distill.learn_from``). The
    section is named after its stage, ``teacher``."""

    model_config = ConfigDict(extra="forbid")

    # "human" = the dataset's rewrites; "answer" = the question with the dataset's answer; others name LLM teachers
    # (rewrite.name, rewrite.name + "+answer"). Each is a `system` of the stage's runs.parquet.
    systems: list[str] = Field(["human", "llm"], min_length=1, description="the teacher runs computed")
    k: int = Field(1000, ge=1, le=100_000)
    fusion: Fusion = "mean_score"
    fuse: list[str] | None = Field(None, description="the teachers the fused run averages, among those computed "
                                                     "(none: all), e.g. human + LLM beside a privileged answer")
    shard_turns: int = Field(100_000, description="turns per retrieval shard (a task each on a cluster)")
    searcher: Backend = Field("auto", description="auto: the exact sparse-matrix searcher for corpora it is faster "
                                                  "on and fits in memory, else Lucene (retrieval/index/sparse.py: "
                                                  "choose_backend); sparse or lucene: that one (same runs)")

    @field_validator("systems")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for n in names:
            teacher_name(n)
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names repeat: {names}")
        return names


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def teacher_name(name: str) -> str:
    """A teacher's name names files (``runs/rewrite-<name>.trec``) and artifacts: letters, digits, ``_.+-``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"teacher name {name!r}: use letters, digits and _ . + - (at most 64, no '/' or spaces)")
    return name


def run(out: Path, work: Path, progress, encoder: SpladeConfig, teacher: TeacherConfig, rewrite: Manifest,
        index: Manifest) -> dict:
    """``runs.parquet``: every teacher's top-k run and the fused one (column ``system``).

    Here (no cluster), the runs of query texts searched before with the same encoder, ``k`` and corpus come from
    the run folder's per-turn cache (``<out>/cache/turns/``, retrieval/turn_cache.py): a dataset that grows is
    searched for its new turns only (``computed_turns`` / ``reused_turns`` in the stats). On a cluster the shards
    are searched as before."""
    # imported here, not at the top: a cached run reads this module for the config and the key, and must not
    # pay for torch and transformers (tests/disco/test_cached_run.py)
    from core.parallel import distributed
    from retrieval.teachers import write_teacher_runs
    from retrieval.turn_cache import cached_teacher_runs

    rewrites = pl.read_parquet(rewrite["rewrites"])
    if distributed():
        rows, summary = write_teacher_runs(out / "runs.parquet", rewrites, teacher.systems, encoder, index["lucene"],
                                           teacher.k, teacher.fusion, progress, teacher.shard_turns,
                                           teacher.searcher, fuse_only=teacher.fuse)
        return {"teachers": summary, "rows": rows, "computed_turns": len(rewrites), "reused_turns": 0}
    rows, summary, reuse = cached_teacher_runs(out / "runs.parquet", rewrites, teacher.systems, encoder,
                                               index["lucene"], index.outputs["doc_vectors"].sha256, teacher.k,
                                               teacher.fusion, work.parents[1] / "cache" / "turns", progress,
                                               teacher.searcher, fuse_only=teacher.fuse,
                                               shard_turns=teacher.shard_turns)
    return {"teachers": summary, "rows": rows, **reuse}


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
