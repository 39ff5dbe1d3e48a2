"""The pipeline graph, read from the stage declarations: their order, what each needs, and one run's plan.

A run has one or more datasets: the training datasets (``data``, then each of ``extra_data``: their ingest,
rewrite, index and teacher instances all feed the distillation) and, for zero-shot evaluation (``eval_data``),
an evaluation dataset with its own instances (the rewrite baselines) feeding ``evaluate``; without it,
``data``'s held-out split is evaluated. A per-dataset stage is instanced once per dataset (``ingest``,
``train1-ingest``, ``eval-ingest``, ...); a stage instanced once receives, for each per-dataset upstream stage,
the instance of its dataset: a list over the training datasets for a stage of scope ``training`` (distill).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stages import distill, evaluate, index, ingest, rewrite, rewriter, teacher
from stages.base import Stage, read_fields
from stages.config import PipelineConfig

STAGES: tuple[Stage, ...] = (ingest.STAGE, rewriter.STAGE, rewrite.STAGE, index.STAGE, teacher.STAGE, distill.STAGE,
                              evaluate.STAGE)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def upstream_of(name: str) -> set[str]:
    """``name`` and every stage it needs."""
    return {name}.union(*(upstream_of(d) for d in BY_NAME[name].upstream))


@dataclass(frozen=True)
class Dataset:
    """One dataset of a run: the config its per-dataset stages read, and its role."""

    prefix: str  # of its instances' names: "" for ``data``, "train<i>-" for ``extra_data``, "eval-" for ``eval_data``
    config: PipelineConfig
    train: bool  # feeds distill
    evaluate: bool  # feeds evaluate


def datasets(config: PipelineConfig) -> list[Dataset]:
    """The run's datasets: ``data`` first (also evaluated when there is no ``eval_data``), then the extra
    training datasets, then the evaluation dataset."""
    train = config.training_data()
    out = [Dataset("", config, train=True, evaluate=config.eval_data is None)]
    out += [Dataset(f"train{i}-", config.extra_config(d), train=True, evaluate=False) for i, d in enumerate(train[1:], 1)]
    if config.eval_data is not None:
        out.append(Dataset("eval-", config.eval_config(), train=False, evaluate=True))
    return out


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
    # a "training" stage reads the instances of every training dataset (the rewriter their ingest, distill all four)
    pooled = set().union(*(upstream_of(n) for n in needed if BY_NAME[n].scope == "training"))
    steps: list[Step] = []
    for stage in STAGES:
        if stage.name not in needed or stage.name in given:
            continue
        if stage.scope == "dataset":
            for ds in sets:
                if ds.train and (ds.prefix == "" or stage.name in pooled) or ds.evaluate and "evaluate" in needed:
                    steps.append(Step(ds.prefix + stage.name, stage, read_fields(stage, ds.config),
                                      {u: ds.prefix + u if BY_NAME[u].scope == "dataset" else u for u in stage.upstream}))
            continue
        role = [ds for ds in sets if (ds.train if stage.scope == "training" else ds.evaluate)]
        upstream: dict[str, str | tuple[str, ...]] = {}
        for u in stage.upstream:
            if BY_NAME[u].scope != "dataset":
                upstream[u] = u
            elif stage.scope == "training":
                upstream[u] = tuple(ds.prefix + u for ds in role)
            else:
                upstream[u] = role[0].prefix + u
        steps.append(Step(stage.name, stage, read_fields(stage, role[0].config), upstream))
    return steps
