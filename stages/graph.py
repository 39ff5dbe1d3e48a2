"""The pipeline graph, read from the stage declarations: their order, what each needs, and one run's plan.

A run has one or more datasets: the training dataset (its ingest, rewrite, index and teacher feed the
distillation) and, for zero-shot evaluation (``eval_data``), an evaluation dataset with its own ingest,
rewrite, index and teacher instances (the rewrite baselines) feeding ``evaluate``. A per-dataset stage is
instanced once per dataset; a stage instanced once (distill, evaluate) receives, for each per-dataset upstream
stage, the instance of its dataset(s): one manifest, or a list when several training datasets feed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stages import distill, evaluate, index, ingest, rewrite, teacher
from stages.base import Stage, read_fields
from stages.config import PipelineConfig

STAGES: tuple[Stage, ...] = (ingest.STAGE, rewrite.STAGE, index.STAGE, teacher.STAGE, distill.STAGE, evaluate.STAGE)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def upstream_of(name: str) -> set[str]:
    """``name`` and every stage it needs."""
    return {name}.union(*(upstream_of(d) for d in BY_NAME[name].upstream))


@dataclass(frozen=True)
class Dataset:
    """One dataset of a run: the config its per-dataset stages read, and its role."""

    prefix: str  # of its stage instances' names: "" for the training dataset, "eval-" for the evaluation one
    config: PipelineConfig
    train: bool  # feeds distill
    evaluate: bool  # feeds evaluate


def datasets(config: PipelineConfig) -> list[Dataset]:
    if config.eval_data is None:
        return [Dataset("", config, train=True, evaluate=True)]
    return [Dataset("", config, train=True, evaluate=False), Dataset("eval-", config.target(), False, True)]


@dataclass(frozen=True)
class Step:
    """One stage instance to run: its name in the run (``eval-index``), the fields it reads, its upstream."""

    name: str
    stage: Stage
    fields: dict = field(hash=False)
    upstream: dict[str, str | tuple[str, ...]] = field(hash=False)  # stage name -> instance name(s)


def plan(config: PipelineConfig, stop: str | None = None, given: tuple[str, ...] = ()) -> list[Step]:
    """The stage instances a run executes, in order: up to ``stop`` (all when None), skipping ``given`` ones
    (their manifests come from elsewhere, e.g. the student of an earlier run)."""
    needed = upstream_of(stop) if stop else set(NAMES)
    if set(given) & needed:  # what only the given stages need is not needed
        needed = {stop}.union(*(upstream_of(u) for u in BY_NAME[stop].upstream if u not in given)) | set(given)
    sets = datasets(config)
    steps: list[Step] = []
    for stage in STAGES:
        if stage.name not in needed or stage.name in given:
            continue
        if stage.per_dataset:
            for ds in sets:
                if ds.train or "evaluate" in needed:
                    steps.append(Step(ds.prefix + stage.name, stage, read_fields(stage, ds.config),
                                      {u: ds.prefix + u for u in stage.upstream}))
            continue
        role = [ds for ds in sets if (ds.evaluate if stage.name == "evaluate" else ds.train)]
        upstream: dict[str, str | tuple[str, ...]] = {}
        for u in stage.upstream:
            names = tuple(ds.prefix + u for ds in role) if BY_NAME[u].per_dataset else (u,)
            upstream[u] = names[0] if len(names) == 1 else names
        steps.append(Step(stage.name, stage, read_fields(stage, role[0].config), upstream))
    return steps
