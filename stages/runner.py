"""Run the pipeline (or up to one stage) without Prefect: the plan of :mod:`stages.graph`, each step through
:func:`stages.base.run_stage`. The Prefect flows run the same plan with a cached Prefect task per step."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Mapping

from core.io import Manifest, run_temporaries
from core.lock import run_lock
from core.run_record import RunRecord
from stages.base import run_stage
from stages.config import PipelineConfig
from stages.evaluate import publish
from stages.graph import Step, plan

# runner(step, upstream manifests by stage name, out, refresh) -> the step's manifest
Runner = Callable[[Step, dict, str, bool], Manifest]


def run_step(step: Step, upstream: dict, out: str, refresh: bool) -> Manifest:
    """One step of the plan as a plain function (the :data:`Runner` without Prefect; tasks.stage.run_step is the
    same as a cached Prefect task)."""
    return run_stage(step.stage, step.fields, upstream, out, refresh=refresh)


def run_pipeline(config: PipelineConfig, out: str | Path, stop: str | None = None, refresh: bool = False,
                 given: Mapping[str, Manifest] | None = None, runner: Runner = run_step) -> dict[str, Manifest]:
    """Every step of the plan, in order; ``refresh`` recomputes each step run, or only ``stop``'s when named.

    Returns the manifests by instance name (``ingest``, ``eval-ingest``, ...); with ``evaluate`` done, its
    report is copied to ``<out>/metrics.json``, ``report.md`` and ``metrics.png``.

    Holds ``<out>``'s run lock (:func:`core.lock.run_lock`: a second run on the same folder stops with a clear
    error) and first removes the temporary folders a killed run left there (no other process can own them).
    """
    out = str(Path(out).resolve())
    done: dict[str, Manifest] = dict(given or {})
    with run_lock(out):
        for tmp in run_temporaries(out):
            shutil.rmtree(tmp, ignore_errors=True)
        for step in plan(config, stop, tuple(done)):
            upstream = {u: done[n] if isinstance(n, str) else [done[x] for x in n] for u, n in step.upstream.items()}
            done[step.name] = runner(step, upstream, out, refresh and (stop is None or step.stage.name == stop))
        if "evaluate" in done:
            publish(done["evaluate"], out)
    return done


def write_run_record(config: PipelineConfig, out: str | Path, done: Mapping[str, Manifest]) -> None:
    """``<out>/run.json``: the configuration and every stage's manifest (core/run_record.py; what `disco
    evaluate`, `search`, `serve`, `export` and `gc` read back)."""
    RunRecord[PipelineConfig](config=config, stages=dict(done)).write(out)
