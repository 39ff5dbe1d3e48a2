"""Distill task: train the student query encoder on conversations against a teacher run."""

from __future__ import annotations

import shutil

import polars as pl
from prefect import task

from disco.config import TeacherConfig
from disco.errors import DiscoError
from disco.io import Manifest, atomic_path, write_parquet
from models.distill import DistillConfig, train_student
from models.examples import Source
from models.splade import SpladeConfig
from tasks.common import Progress, StageCache, link_artifacts, manifest, markdown_artifact, stage_dir, \
    table_artifact, work_dir


@task(name="distill", cache_policy=StageCache(stage="distill"), persist_result=True, result_serializer="json")
def distill_task(out: str, encoder: SpladeConfig, distill: DistillConfig, teacher: TeacherConfig,
                 data: list[Manifest], index: list[Manifest], teachers: list[Manifest],
                 rewrites: list[Manifest]) -> Manifest:
    """Train on the train turns of every dataset (``data[i]`` with ``index[i]``, ``teachers[i]`` and
    ``rewrites[i]``); the first dataset's dev turns, if any, choose the best epoch."""
    key, final = stage_dir("distill", out, {"encoder": encoder, "distill": distill, "teacher": teacher,
                                            "data": data, "index": index, "teachers": teachers,
                                            "rewrites": rewrites})
    k = teacher.k
    work = work_dir("distill", out, key)  # checkpoints survive an interruption; training resumes from them
    sources = []
    for i, (d, x, t, rw) in enumerate(zip(data, index, teachers, rewrites)):
        runs = pl.read_parquet(t["runs"])
        teacher_run = runs.filter(pl.col("system") == distill.teacher)
        if teacher_run.is_empty():
            raise DiscoError(f"distill: no teacher run named {distill.teacher!r} for {d.stats.get('format')} "
                             f"data; runs: {sorted(set(runs['system']))}")
        write_parquet(work / f"teacher_run-{i}.parquet", teacher_run.to_arrow())
        name = "" if len(data) == 1 else f"{i}-{d.stats.get('format')}"
        sources.append(Source(d["turns"], d["qrels"], work / f"teacher_run-{i}.parquet", x["doc_vectors"], name,
                              rewrites=rw["rewrites"], teachers=tuple(teacher.teachers)))
    bar = Progress("distill-progress", f"distilling from {distill.teacher}", 1)
    summary = train_student(distill, encoder.model, sources, work, max_length=encoder.query_max_length,
                            quant_scale=encoder.quant_scale, k=k, dev=sources[0], progress=bar)
    bar.close()
    with atomic_path(final) as tmp:
        tmp.mkdir()
        shutil.copytree(work / "student", tmp / "student")
        for name in ("loss.parquet", "dev.parquet"):
            shutil.copy2(work / name, tmp / name)
    m = manifest("distill", key, final, {"student": ("student", None), "loss": ("loss.parquet", None),
                                         "dev": ("dev.parquet", None)},
                 {**summary, "teacher": distill.teacher})
    _loss_artifacts(pl.read_parquet(final / "loss.parquet"), summary)
    _dev_artifacts(pl.read_parquet(final / "dev.parquet"), summary)
    link_artifacts("distill", m)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    shutil.rmtree(work / "best", ignore_errors=True)
    return m


def _loss_artifacts(loss: pl.DataFrame, summary: dict) -> None:
    """Loss per epoch as a table, and the curve as a markdown image."""
    from disco.report import line_plot_markdown

    parts = [c for c in loss.columns if c not in ("step", "epoch", "lr")]
    per_epoch = loss.group_by("epoch").agg([pl.col(c).mean().round(5) for c in parts]).sort("epoch")
    table_artifact("distill-loss", per_epoch.to_dicts(), f"training loss per epoch ({summary.get('steps')} steps)")
    markdown_artifact("distill-loss-curve", line_plot_markdown(loss, "step", parts, "distillation loss"),
                      "loss curve")


def _dev_artifacts(dev: pl.DataFrame, summary: dict) -> None:
    """The dev curve (measures per epoch; epoch 0 is the untrained student) and the chosen epoch."""
    if dev.is_empty() or "RR@10" not in dev.columns:
        return
    from disco.report import line_plot_markdown

    table_artifact("distill-dev-curve", dev.with_columns(pl.col(pl.Float64).round(4)).to_dicts(),
                   f"dev measures per epoch ({summary.get('dev_turns')} dev turns, ranked in the "
                   f"{summary.get('dev_ranked')}); best epoch {summary.get('best_epoch')}")
    markdown_artifact("distill-dev-plot", line_plot_markdown(dev, "epoch", ["RR@10", "nDCG@3", "R@10"],
                                                             "dev measures per epoch"), "dev curve")
