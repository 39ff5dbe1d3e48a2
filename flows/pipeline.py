"""The whole DiSCo pipeline: the table of contents of a run."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest, write_json
from flows._stage import stage as cached_stage
from flows.distill import distill_flow  # noqa: F401  (the stage flow, deployed on its own)
from flows.evaluate import evaluate_flow
from flows.index import index_flow
from flows.ingest import ingest_flow
from flows.rewrite import rewrite_flow
from flows.teacher import teacher_flow
from tasks.distill import distill_task

Stage = Literal["ingest", "rewrite", "index", "teacher", "distill", "evaluate"]
STAGES: tuple[str, ...] = Stage.__args__
DEPENDS: dict[str, tuple[str, ...]] = {
    "ingest": (), "rewrite": ("ingest",), "index": ("ingest",), "teacher": ("rewrite", "index"),
    "distill": ("teacher",), "evaluate": ("distill",),
}


def upstream_of(stage: str) -> set[str]:
    """``stage`` and every stage it needs."""
    return {stage}.union(*(upstream_of(d) for d in DEPENDS[stage]))


@flow(name="disco-pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", stage: Stage | None = None,
             refresh: bool = False) -> dict[str, Manifest]:
    """ingest -> rewrite -> index -> teacher -> distill -> evaluate.

    ``stage`` stops after that stage (upstream stages come from cache when unchanged); ``refresh`` recomputes
    every stage that runs, or only ``stage`` when one is named.
    """
    needed = upstream_of(stage) if stage else set(STAGES)

    def fresh(name: str) -> bool:
        return refresh and (stage is None or stage == name)

    done: dict[str, Manifest] = {}
    done["ingest"] = ingest_flow(config, out, fresh("ingest"))
    if "rewrite" in needed:
        done["rewrite"] = rewrite_flow(config, out, fresh("rewrite"), data=done["ingest"])
    if "index" in needed:
        done["index"] = index_flow(config, out, fresh("index"), data=done["ingest"])
    if "teacher" in needed:
        done["teacher"] = teacher_flow(config, out, fresh("teacher"), data=done["ingest"],
                                       rewrites=done["rewrite"], index=done["index"])
    if "distill" in needed:
        pooled = [training_inputs(config.for_data(d), out, f"train{i}-") for i, d in
                  enumerate(config.training_data()[1:], start=1)]
        for p in pooled:
            done.update(p)
        done["distill"] = cached_stage(distill_task, out, fresh("distill"))(
            out, config.encoder, config.distill, config.teacher,
            *([done[s], *(p[f"train{i}-{s}"] for i, p in enumerate(pooled, start=1))]
              for s in ("ingest", "index", "teacher", "rewrite")))
    if "evaluate" in needed and config.eval_data is not None:
        done.update(evaluate_student(config.target(), out, done["distill"], refresh=fresh("evaluate")))
    elif "evaluate" in needed:
        done["evaluate"] = evaluate_flow(config, out, fresh("evaluate"), data=done["ingest"], index=done["index"],
                                         teachers=done["teacher"], student=done["distill"])
    _record(config, out, done)
    return done


@flow(name="training-data", log_prints=True)
def training_inputs(config: PipelineConfig, out: str, prefix: str) -> dict[str, Manifest]:
    """An extra training dataset (``config.data``): its own ingest, rewrite, index and teacher runs."""
    done = {f"{prefix}ingest": ingest_flow(config, out)}
    done[f"{prefix}rewrite"] = rewrite_flow(config, out, data=done[f"{prefix}ingest"])
    done[f"{prefix}index"] = index_flow(config, out, data=done[f"{prefix}ingest"])
    done[f"{prefix}teacher"] = teacher_flow(config, out, data=done[f"{prefix}ingest"],
                                            rewrites=done[f"{prefix}rewrite"], index=done[f"{prefix}index"])
    return done


@flow(name="evaluate-student", log_prints=True)
def evaluate_student(config: PipelineConfig, out: str, student: Manifest, refresh: bool = False
                     ) -> dict[str, Manifest]:
    """A trained student on ``config.data`` (every turn held out): zero-shot evaluation, no retraining.

    The evaluation dataset gets its own ingest, index and teacher runs (for the rewrite baselines).
    """
    done = {"eval-ingest": ingest_flow(config, out, refresh)}
    done["eval-rewrite"] = rewrite_flow(config, out, data=done["eval-ingest"])
    done["eval-index"] = index_flow(config, out, data=done["eval-ingest"])
    done["eval-teacher"] = teacher_flow(config, out, data=done["eval-ingest"], rewrites=done["eval-rewrite"],
                                        index=done["eval-index"])
    done["evaluate"] = evaluate_flow(config, out, refresh, data=done["eval-ingest"], index=done["eval-index"],
                                     teachers=done["eval-teacher"], student=student)
    return done


def _record(config: PipelineConfig, out: str, done: dict[str, Manifest]) -> None:
    """``<out>/run.json``: the configuration and every stage's manifest (what `disco evaluate` reads back)."""
    write_json(f"{out}/run.json", {"config": config.model_dump(mode="json"),
                                   "stages": {k: v.model_dump(mode="json") for k, v in done.items()}})
