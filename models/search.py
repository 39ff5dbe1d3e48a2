"""Settings chosen on the run's own dev turns, then the full training (issue 25).

What helps the student depends on the data: on one MTRAG-UN domain the agent's answers help, on another they
drown the question; a deeper student may or may not pay for itself; the sparsity weight that brings the query to
the last turn's length without losing effectiveness differs per corpus. So :func:`search_and_train` trains each
candidate of ``distill.search`` (:class:`models.distill_config.DevSearch`) for a short budget, keeps the one the
dev turns prefer, one axis at a time (teacher, input format, residual-branch depth, sparsity weight, each with
the earlier choices fixed: a coordinate search, ``sum(len(axis))`` short runs rather than their product), and
trains the winner with the full budget (:func:`models.distill.train_student`). Only dev turns are scored; the
test split never takes part.

Each candidate's run lives in ``<out>/search/<hash of its settings>/``: a finished one is reused (a candidate
that two axes share, e.g. the chosen input at the configured depth, trains once) and an interrupted one resumes
from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

from models.conversation import StudentInput
from models.distill import train_student
from models.distill_config import DevSearch, DistillConfig
from models.examples import Source
from models.selection import MEASURES, Rule


def label(value: Any) -> str:
    """A short name for a candidate: an input format by its differences from the paper's, a number as itself."""
    if isinstance(value, StudentInput):
        default = StudentInput().model_dump()
        diff = {k: v for k, v in value.model_dump().items() if v != default[k]}
        if not diff:
            return "paper format (answers, newest first)"
        if diff == {"answers": False}:
            return "user turns only"
        return ", ".join(f"{k}={v}" for k, v in diff.items())
    return str(value)


def _folder(root: Path, cfg: DistillConfig) -> Path:
    key = hashlib.sha256(cfg.model_dump_json(exclude={"keep_checkpoints", "soup_seeds"}).encode()).hexdigest()[:16]
    return root / "search" / key


def _has_dev(dev: Source | list[Source] | None) -> bool:
    import polars as pl

    for d in (dev if isinstance(dev, list) else [dev] if dev is not None else []):
        if pl.scan_parquet(d.turns).filter(pl.col("split") == "dev").select(pl.len()).collect().item():
            return True
    return False


def search_and_train(cfg: DistillConfig, encoder_model: str,
                     sources: list[Source] | Callable[[str], list[Source]], out_dir: str | Path, *,
                     dev: Source | list[Source] | None, progress: Callable[[int, int], None] | None = None,
                     **train_kwargs) -> dict:
    """Choose ``cfg.search``'s axes on dev (when the data has dev turns and ``cfg.select_on_dev``), then train
    the chosen settings with ``cfg``'s budget into ``out_dir`` (as :func:`train_student`). ``sources``: the
    training sources, or ``sources(learn_from)`` giving them for a teacher (needed to search ``learn_from``;
    ``dev`` then is the configured teacher's, whose dev turns are the same). The summary adds ``search``: one
    row per candidate (axis, value, its dev measures and query terms, whether it was chosen) and ``chosen``:
    each searched axis' value."""
    out = Path(out_dir)
    axes = cfg.search.axes() if cfg.select_on_dev and _has_dev(dev) else []
    sources_for = sources if callable(sources) else None
    if sources_for is None and any(axis == "learn_from" for axis, _ in axes):
        raise ValueError("search.learn_from needs the sources of each teacher: pass sources as a function")

    def data(c: DistillConfig) -> list[Source]:
        return sources_for(c.learn_from) if sources_for is not None else sources

    short = cfg.model_copy(update={
        "steps": math.ceil(cfg.search.budget * cfg.steps) if cfg.steps else None,
        "epochs": math.ceil(cfg.search.budget * cfg.epochs), "interpolate": [1.0], "search": DevSearch(),
        "max_terms_ratio": None, "soup_seeds": []})  # the soup (models/soup.py) is the chosen setting's only
    runs, done = sum(len(v) for _, v in axes) + 1, 0  # the progress counts trainings, each in its own steps

    def step(k: int, n: int) -> None:
        if progress is not None and n:
            progress(round(1000 * (done + min(k, n) / n) / runs), 1000)

    rows: list[dict] = []
    chosen: dict[str, Any] = {}
    for axis, values in axes:
        # the sparsity weights are compared within the query-term budget; inputs and depths on effectiveness
        # alone (an input denser at lambda 0 may become sparse once the weight is chosen)
        sparse = axis == "lambda_q" and cfg.max_terms_ratio is not None
        trial_base = short.model_copy(update={"max_terms_ratio": cfg.max_terms_ratio}) if sparse else short
        results = []
        for value in values:
            trial = trial_base.model_copy(update={axis: value})
            folder = _folder(out, trial)
            if (folder / "summary.json").exists():
                summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
            else:
                summary = train_student(trial, encoder_model, data(trial), folder, dev=dev, progress=step,
                                        **train_kwargs)
            done += 1
            best = summary["best_dev"] or {}
            results.append({"axis": axis, "value": label(value), **{m: best.get(m) for m in (*MEASURES, "terms",
                                                                                           "flops")},
                            "best_epoch": summary["best_epoch"], "max_terms": summary.get("max_query_terms"),
                            "seconds": summary["seconds"], "chosen": False})
        rule = Rule(cfg.selection_metric, results[0]["max_terms"] if sparse else None)
        pick = results.index(rule.best(results))
        results[pick]["chosen"] = True
        rows += results
        chosen[axis] = values[pick]
        short = short.model_copy(update={axis: values[pick]})
    final = cfg.model_copy(update={**chosen, "search": DevSearch()})
    summary = train_student(final, encoder_model, data(final), out, dev=dev, progress=step, **train_kwargs)
    return {**summary, "search": rows, "chosen": {k: label(v) for k, v in chosen.items()},
            "chosen_settings": {k: (v.model_dump() if isinstance(v, StudentInput) else v) for k, v in chosen.items()}}
