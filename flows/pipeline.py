"""The whole DiSCo pipeline: the table of contents of a run."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest, write_json
from flows.distill import distill_flow
from flows.evaluate import evaluate_flow
from flows.index import index_flow
from flows.ingest import ingest_flow
from flows.rewrite import rewrite_flow
from flows.teacher import teacher_flow

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
        done["distill"] = distill_flow(config, out, fresh("distill"), data=done["ingest"], index=done["index"],
                                       teachers=done["teacher"])
    if "evaluate" in needed:
        done["evaluate"] = evaluate_flow(config, out, fresh("evaluate"), data=done["ingest"], index=done["index"],
                                         teachers=done["teacher"], student=done["distill"])
    write_json(f"{out}/run.json", {"config": config.model_dump(mode="json"),
                                   "stages": {k: v.model_dump(mode="json") for k, v in done.items()}})
    return done
