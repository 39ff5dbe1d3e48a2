"""The one generic wrapper: a stage declaration -> a cached Prefect task (retries, artifacts, progress).

The cache key is the stage's key (:func:`stages.base.stage_key`), computed once by :func:`run_step` and
passed to the task, which writes into the folder of that same key: the Prefect cache and the output folders
cannot disagree. Results (the small JSON manifests) are stored in ``<out>/cache``, so deleting ``out`` forgets
them; a cache hit whose outputs are missing or not whole (:meth:`core.io.Output.verify`) is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy

from core.errors import StageInputError
from core.io import Manifest
from stages.base import run_stage, stage_key
from stages.graph import BY_NAME, Step
from tasks.artifacts import Progress, publish_artifacts, try_


@dataclass
class StageKey(CachePolicy):
    """Prefect cache key = ``<stage>-<stage key>``, the stage key being a task input (see the module docstring)."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str:
        return f"{inputs['stage']}-{inputs['key']}"


def _run(stage: str, key: str, fields: dict[str, Any], upstream: dict, out: str, refresh: bool = False
         ) -> Manifest:
    decl = BY_NAME[stage]
    m = run_stage(decl, fields, upstream, out, key=key, refresh=refresh, progress=Progress)
    try_(lambda: publish_artifacts(stage, m, decl.artifacts(m) if decl.artifacts else []))
    return m


@lru_cache(maxsize=None)
def stage_task(name: str) -> Task:
    """The cached Prefect task of the stage ``name``."""
    decl = BY_NAME[name]
    return task(_run, name=name, cache_policy=StageKey(), persist_result=True, result_serializer="json",
                retries=decl.retries, description=decl.summary)


def run_step(step: Step, upstream: dict, out: str, refresh: bool) -> Manifest:
    """Run one planned step as its stage's Prefect task (a :data:`stages.runner.Runner`)."""
    key = stage_key(step.stage, step.fields, upstream)
    t = stage_task(step.stage.name).with_options(result_storage=Path(out).resolve() / "cache",
                                                 refresh_cache=refresh or None)
    m = t(step.stage.name, key, step.fields, upstream, out, refresh)
    if not _whole(m):  # a cached result whose folder was deleted or damaged since: recompute
        m = t.with_options(refresh_cache=True)(step.stage.name, key, step.fields, upstream, out, True)
    return m


def _whole(m: Manifest) -> bool:
    try:
        for o in m.outputs.values():
            o.verify()
    except StageInputError:
        return False
    return Path(m.dir).exists()
