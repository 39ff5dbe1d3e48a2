"""The whole DiSCo pipeline: the table of contents of a run.

    ingest -> rewrite -> index -> teacher -> distill -> evaluate

Each stage is declared once in ``stages/<name>.py`` (upstream stages, config fields, run function, outputs);
:mod:`stages.graph` orders them and instances the per-dataset ones for each dataset of the run (the training
data; with ``eval_data``, the evaluation data too). Every step runs as its stage's cached Prefect task
(:func:`tasks.stage.run_step`); the same plan runs without Prefect through :func:`stages.runner.run_pipeline`.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from core.io import Manifest
from stages.config import PipelineConfig
from stages.graph import NAMES
from stages.runner import run_pipeline, write_run_record
from tasks.parallel import task_runner
from tasks.stage import labelled_runner

Stage = Literal["ingest", "rewriter", "rewrite", "index", "teacher", "distill", "evaluate"]  # stages.graph.NAMES
STAGES: tuple[str, ...] = NAMES
if Stage.__args__ != NAMES:  # pragma: no cover (a type for the Prefect UI's form, checked against the graph)
    raise RuntimeError(f"flows.pipeline.Stage lists {Stage.__args__}, the declarations {NAMES}")


@flow(name="disco-pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", stage: Stage | None = None,
             refresh: bool = False) -> dict[str, Manifest]:
    """ingest -> rewrite -> index -> teacher -> distill -> evaluate.

    ``stage`` stops after that stage (upstream stages come from cache when unchanged); ``refresh`` recomputes
    every stage that runs, or only ``stage`` when one is named.
    """
    config.check_models()  # a run started from the UI or a deployment stops here too, before the first stage
    done = run_pipeline(config, out, stop=stage, refresh=refresh, runner=labelled_runner(config))
    write_run_record(config, out, done)
    return done


def run(config: PipelineConfig, out: str, stage: Stage | None = None, refresh: bool = False
        ) -> dict[str, Manifest]:
    """:func:`pipeline` on the task runner ``config.runner`` names (a Ray cluster runs the stages' shards)."""
    runner = task_runner(config.runner)
    flow_ = pipeline.with_options(task_runner=runner) if runner is not None else pipeline
    return flow_(config, out, stage=stage, refresh=refresh)


@flow(name="evaluate-student", log_prints=True)
def evaluate_student(config: PipelineConfig, out: str, student: Manifest, refresh: bool = False
                     ) -> dict[str, Manifest]:
    """A trained student on ``config.data`` (every turn held out): zero-shot evaluation, no retraining.

    The evaluation dataset gets its own ingest, rewrite, index and teacher instances (the rewrite baselines).
    """
    return run_pipeline(config, out, stop="evaluate", refresh=refresh, given={"distill": student},
                        runner=labelled_runner(config))
