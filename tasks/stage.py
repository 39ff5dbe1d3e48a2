"""The one generic wrapper: a stage declaration -> a cached Prefect task (retries, artifacts, progress).

The cache key is the stage's key (:func:`stages.base.stage_key`), computed once by :func:`run_step` and
passed to the task, which writes into the folder of that same key: the Prefect cache and the output folders
cannot disagree. Results (the small JSON manifests) are stored in ``<out>/cache``, so deleting ``out`` forgets
them; a cache hit whose outputs are missing or not whole (:meth:`core.io.Output.verify`) is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy

from core.errors import StageInputError
from core.io import Manifest
from core.parallel import using
from stages.base import run_stage, stage_key
from stages.config import PipelineConfig
from stages.graph import BY_NAME, Step, datasets
from stages.runner import Runner
from tasks.artifacts import Progress, publish_artifacts, run_label, try_
from tasks.parallel import flow_mapper


@dataclass
class StageKey(CachePolicy):
    """Prefect cache key = ``<stage>-<stage key>``, the stage key being a task input (see the module docstring)."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str:
        return f"{inputs['stage']}-{inputs['key']}"


def _run(stage: str, key: str, fields: dict[str, Any], upstream: dict, out: str, refresh: bool = False,
         label: str | None = None) -> Manifest:
    decl = BY_NAME[stage]
    with using(flow_mapper()):  # shards on the flow's Ray task runner, if it has one
        m = run_stage(decl, fields, upstream, out, key=key, refresh=refresh, progress=partial(Progress, label=label))
    try_(lambda: publish_artifacts(stage, m, decl.artifacts(m) if decl.artifacts else [], label))
    return m


@lru_cache(maxsize=None)
def stage_task(name: str) -> Task:
    """The cached Prefect task of the stage ``name``."""
    decl = BY_NAME[name]
    return task(_run, name=name, cache_policy=StageKey(), persist_result=True, result_serializer="json",
                retries=decl.retries, description=decl.summary)


def run_step(step: Step, upstream: dict, out: str, refresh: bool, label: str | None = None) -> Manifest:
    """Run one planned step as its stage's Prefect task (a :data:`stages.runner.Runner`); ``label`` names the
    run in the artifacts' descriptions (it is not part of the cache key)."""
    key = stage_key(step.stage, step.fields, upstream)
    t = stage_task(step.stage.name).with_options(result_storage=Path(out).resolve() / "cache",
                                                 refresh_cache=refresh or None)
    m = t(step.stage.name, key, step.fields, upstream, out, refresh, label)
    if not _whole(m):  # a cached result whose folder was deleted or damaged since: recompute
        m = t.with_options(refresh_cache=True)(step.stage.name, key, step.fields, upstream, out, True, label)
    return m


def _whole(m: Manifest) -> bool:
    try:
        for o in m.outputs.values():
            o.verify()
    except StageInputError:
        return False
    return Path(m.dir).exists()


def step_dataset(config: PipelineConfig, step: Step) -> str:
    """The dataset a step reads (``format:path``): its own for a per-dataset step, the training data for the
    pooled one (distill), the evaluated data otherwise."""
    sets = datasets(config)
    if step.stage.scope == "dataset":
        ds = next(d for d in sets if step.name == d.prefix + step.stage.name)
    else:
        ds = next(d for d in sets if (d.train if step.stage.scope == "training" else d.evaluate))
    data, pooled = ds.config.data, sum(d.train for d in sets)
    more = f" (+{pooled - 1} more)" if step.stage.scope == "training" and pooled > 1 else ""
    return f"{data.format}:{data.path}{more}"


def labelled_runner(config: PipelineConfig) -> Runner:
    """:func:`run_step` with each step's artifacts naming the run (preset, dataset, output folder)."""
    def runner(step: Step, upstream: dict, out: str, refresh: bool) -> Manifest:
        return run_step(step, upstream, out, refresh, run_label(config.name, step_dataset(config, step), out))

    return runner
