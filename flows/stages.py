"""One flow per stage (the deployments in prefect.yaml point here): the stage and, from cache when unchanged,
every stage it needs. Derived from the declarations; tests/flows/test_stages.py checks one exists per stage."""

from __future__ import annotations

from prefect import Flow, flow

from core.io import Manifest
from stages.config import PipelineConfig
from stages.graph import BY_NAME
from stages.runner import run_pipeline
from tasks.stage import run_step


def stage_flow(name: str) -> Flow:
    def run(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False) -> Manifest:
        return run_pipeline(config, out, stop=name, refresh=refresh, runner=run_step)[name]

    run.__name__ = run.__qualname__ = f"{name}_flow"
    return flow(run, name=name, log_prints=True, description=BY_NAME[name].summary)


ingest_flow = stage_flow("ingest")
rewrite_flow = stage_flow("rewrite")
index_flow = stage_flow("index")
teacher_flow = stage_flow("teacher")
distill_flow = stage_flow("distill")
evaluate_flow = stage_flow("evaluate")
