"""Distill task: train the student query encoder on conversations against a teacher run."""

from __future__ import annotations

import shutil

import polars as pl
from prefect import task

from disco.errors import DiscoError
from disco.io import Manifest, atomic_path, write_parquet
from models.distill import DistillConfig, train_student
from models.splade import SpladeConfig
from tasks.common import Progress, StageCache, link_artifacts, manifest, markdown_artifact, stage_dir, \
    table_artifact, work_dir


@task(name="distill", cache_policy=StageCache(stage="distill"), persist_result=True, result_serializer="json")
def distill_task(out: str, encoder: SpladeConfig, distill: DistillConfig, distill_from: str, data: Manifest,
                 index: Manifest, teachers: Manifest) -> Manifest:
    key, final = stage_dir("distill", out, {"encoder": encoder, "distill": distill, "distill_from": distill_from,
                                            "data": data, "index": index, "teachers": teachers})
    work = work_dir("distill", out, key)  # checkpoints survive an interruption; training resumes from them
    runs = pl.read_parquet(teachers["runs"])
    teacher_run = runs.filter(pl.col("system") == distill_from)
    if teacher_run.is_empty():
        raise DiscoError(f"distill: no teacher run named {distill_from!r}; runs: {sorted(set(runs['system']))}")
    write_parquet(work / "teacher_run.parquet", teacher_run.to_arrow())
    bar = Progress("distill-progress", f"distilling from {distill_from}", 1)
    summary = train_student(distill, encoder.model, data["turns"], data["qrels"], work / "teacher_run.parquet",
                            index["doc_vectors"], work, progress=bar)
    bar.close()
    with atomic_path(final) as tmp:
        tmp.mkdir()
        shutil.copytree(work / "student", tmp / "student")
        shutil.copy2(work / "loss.parquet", tmp / "loss.parquet")
    m = manifest("distill", key, final, {"student": ("student", None), "loss": ("loss.parquet", None)},
                 {**summary, "teacher": distill_from})
    _loss_artifacts(pl.read_parquet(final / "loss.parquet"), summary)
    link_artifacts("distill", m)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return m


def _loss_artifacts(loss: pl.DataFrame, summary: dict) -> None:
    """Loss per epoch as a table, and the curve as a markdown image."""
    from disco.report import line_plot_markdown

    parts = [c for c in loss.columns if c not in ("step", "epoch", "lr")]
    per_epoch = loss.group_by("epoch").agg([pl.col(c).mean().round(5) for c in parts]).sort("epoch")
    table_artifact("distill-loss", per_epoch.to_dicts(), f"training loss per epoch ({summary.get('steps')} steps)")
    markdown_artifact("distill-loss-curve", line_plot_markdown(loss, "step", parts, "distillation loss"),
                      "loss curve")
