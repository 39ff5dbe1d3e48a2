"""The deployed flows (prefect.yaml, ``disco deploy``): ``pipeline`` and one flow per stage, each taking what
``disco run`` takes (``preset``, ``data``, ``eval_data``, ``overrides`` as ``--set``, ``out``) as typed parameters,
so the Prefect UI shows a form.

They resolve those parameters with the very function ``disco run`` uses (:func:`stages.config.load`) and run
:func:`flows.pipeline.pipeline` as a subflow (on ``runner``'s task runner): the same preset and overrides give the same configuration, the same
stage keys and therefore the same cached outputs as the command line. A stage flow runs its stage and, from cache
when unchanged, every stage it needs; ``refresh`` recomputes that stage only.

(This module must not be called ``stages.py``: Prefect loads an entrypoint by file path under the file's own name,
which would hide the top-level ``stages`` package.)
"""

from __future__ import annotations

from prefect import Flow, flow

from core.io import Manifest
from stages.config import PipelineConfig, load
from stages.graph import BY_NAME, NAMES


def resolve(preset: str, data: list[str] | None, eval_data: str | None, overrides: list[str] | None,
            eval_format: str | None = None) -> PipelineConfig:
    """The configuration ``disco run PRESET --data ... --eval-data ... --set ...`` runs."""
    return load(preset, data or None, list(overrides or []), eval_data, eval_format)


def _describe(params: dict) -> str:
    given = {k: v for k, v in params.items() if v not in (None, [], False)}
    return ", ".join(f"{k}={v}" for k, v in given.items())


@flow(name="pipeline", log_prints=True,
      description="The whole DiSCo pipeline of a preset (as `disco run PRESET --data ... --set ...`).")
def pipeline_flow(preset: str = "demo", data: list[str] | None = None, eval_data: str | None = None,
                  overrides: list[str] | None = None, out: str = "runs/scheduled", refresh: bool = False,
                  eval_format: str | None = None) -> dict[str, Manifest]:
    """ingest -> rewriter -> rewrite -> index -> teacher -> distill -> evaluate on ``preset`` (``data`` / ``eval_data``:
    dataset folders, ``FORMAT:PATH`` allowed; ``overrides``: ``key=value`` as ``--set``)."""
    from flows.pipeline import run as run_flow

    cfg = resolve(preset, data, eval_data, overrides, eval_format)
    print(f"pipeline: {_describe(dict(preset=preset, data=data, eval_data=eval_data, overrides=overrides))} "
          f"-> {out}")
    return run_flow(cfg, out, refresh=refresh)


def stage_flow(name: str) -> Flow:
    """The deployed flow of stage ``name`` (``disco run PRESET --stage NAME``)."""

    def run(preset: str = "demo", data: list[str] | None = None, eval_data: str | None = None,
            overrides: list[str] | None = None, out: str = "runs/scheduled", refresh: bool = False,
            eval_format: str | None = None) -> Manifest:
        from flows.pipeline import run as run_flow

        cfg = resolve(preset, data, eval_data, overrides, eval_format)
        print(f"{name}: {_describe(dict(preset=preset, data=data, eval_data=eval_data, overrides=overrides))} "
              f"-> {out}")
        return run_flow(cfg, out, stage=name, refresh=refresh)[name]

    run.__name__ = run.__qualname__ = f"{name}_flow"
    run.__doc__ = f"{BY_NAME[name].summary} (``refresh`` recomputes this stage only; upstream comes from cache)."
    return flow(run, name=name, log_prints=True, description=BY_NAME[name].summary)


ingest_flow = stage_flow("ingest")
rewriter_flow = stage_flow("rewriter")
rewrite_flow = stage_flow("rewrite")
index_flow = stage_flow("index")
teacher_flow = stage_flow("teacher")
distill_flow = stage_flow("distill")
evaluate_flow = stage_flow("evaluate")
FLOWS: dict[str, Flow] = {"pipeline": pipeline_flow, **{n: globals()[f"{n}_flow"] for n in NAMES}}
