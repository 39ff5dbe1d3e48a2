"""Stage 5, distill: train the student query encoder on conversations to reproduce the teacher's scores
(Lupart et al., SIGIR 2025, sec. 3; the loop is :func:`models.distill.train_student`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from core.errors import DiscoError
from core.io import Manifest, write_parquet
from models.distill import DistillConfig, train_student
from models.splade import SpladeConfig
from retrieval.report import line_plot_markdown
from stages.base import Artifact, Stage


def run(out: Path, work: Path, progress, encoder: SpladeConfig, distill: DistillConfig, distill_from: str,
        ingest: Manifest, index: Manifest, teacher: Manifest) -> dict:
    """``student/`` (safetensors + tokenizer) and ``loss.parquet``; checkpoints in ``work`` make it resumable."""
    runs = pl.read_parquet(teacher["runs"])
    teacher_run = runs.filter(pl.col("system") == distill_from)
    if teacher_run.is_empty():
        raise DiscoError(f"distill: no teacher run named {distill_from!r}; runs: {sorted(set(runs['system']))}")
    write_parquet(work / "teacher_run.parquet", teacher_run.to_arrow())
    bar = progress("distill-progress", f"distilling from {distill_from}", 1)
    summary = train_student(distill, encoder.model, ingest["turns"], ingest["qrels"], work / "teacher_run.parquet",
                            index["doc_vectors"], work, progress=bar)
    bar.close()
    shutil.copytree(work / "student", out / "student")
    shutil.copy2(work / "loss.parquet", out / "loss.parquet")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return {**summary, "teacher": distill_from}


def artifacts(m: Manifest) -> list[Artifact]:
    """Loss per epoch as a table, and the curve as a markdown image."""
    loss = pl.read_parquet(m["loss"])
    parts = [c for c in loss.columns if c not in ("step", "epoch", "lr")]
    per_epoch = loss.group_by("epoch").agg([pl.col(c).mean().round(5) for c in parts]).sort("epoch")
    return [Artifact("table", "distill-loss", per_epoch.to_dicts(),
                     f"training loss per epoch ({m.stats.get('steps')} steps)"),
            Artifact("markdown", "distill-loss-curve", line_plot_markdown(loss, "step", parts, "distillation loss"),
                     "loss curve")]


STAGE = Stage(
    name="distill",
    summary="trains the student query encoder on `q_n [SEP] a_{n-1} [SEP] q_{n-1} ...` (KL + in-batch "
            "contrastive + sparsity)",
    upstream=("ingest", "index", "teacher"),
    reads=("encoder", "distill", "teacher.distill_from"),
    outputs={"student": "student", "loss": "loss.parquet"},
    run=run,
    per_dataset=False,
    artifacts=artifacts,
)
