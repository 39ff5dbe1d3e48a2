"""Configuration fields that were renamed, and how their old names are met (issue 27: one name for each idea).

A key written by hand under its old name (a preset file, a ``--set`` override, a Prefect form) is an error that
names the new key (:func:`renamed_keys`, raised by ``stages.config``); a configuration saved before the rename
(``run.json``, read through :meth:`core.run_record.RunRecord.read`) is migrated on read (:func:`migrate_config`),
so run folders written before it still open in ``disco search``, ``serve``, ``export`` and the model card.

Plain dicts and the standard library only: this sits below every config model.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

# Section kind -> {old field: new field}. "data" stands for every dataset section: ``data``, ``eval_data`` and each
# entry of ``extra_data``.
RENAMED: dict[str, dict[str, str]] = {
    "distill": {"kl_weight": "main_weight",  # the weight of the main loss term, whichever distill.loss is
                "teacher": "learn_from"},    # whom the student learns from: a teacher's name, or "fused"
    "data": {"teacher": "learn_from"},       # a pooled training dataset's own distill.learn_from
    "rewrite": {"teacher": "name"},          # the name of the LLM teacher in tables
    "teacher": {"teachers": "systems"},      # which teacher runs are computed (runs.parquet's `system`)
}


def _sections(config: dict) -> Iterator[tuple[str, str, dict]]:
    """``(where, kind, section)`` for each section of ``config`` (a PipelineConfig as a dict) that had a rename."""
    for kind in RENAMED:
        if kind != "data":
            if isinstance(config.get(kind), dict):
                yield kind, kind, config[kind]
            continue
        for where in ("data", "eval_data"):
            if isinstance(config.get(where), dict):
                yield where, kind, config[where]
        extra = config.get("extra_data")
        for i, d in enumerate(extra if isinstance(extra, list) else []):
            if isinstance(d, dict):
                yield f"extra_data[{i}]", kind, d


def message(where: str, old: str, new: str) -> str:
    return f"{where}.{old} was renamed to {where}.{new}"


def renamed_keys(config: Any) -> list[str]:
    """One message per old key in ``config`` (a PipelineConfig as a dict), e.g. ``"distill.kl_weight was renamed
    to distill.main_weight"``; none for anything else."""
    if not isinstance(config, dict):
        return []
    return [message(where, old, new) for where, kind, section in _sections(config)
            for old, new in RENAMED[kind].items() if old in section]


def renamed_path(path: list[str]) -> str | None:
    """The new dotted name of the key ``path`` (``["distill", "kl_weight"]`` -> ``"distill.main_weight"``), or
    None when it was not renamed (for ``--set``, which addresses sections by name)."""
    if len(path) != 2:
        return None
    where, old = path
    kind = "data" if where in ("data", "eval_data") else where
    new = RENAMED.get(kind, {}).get(old)
    return f"{where}.{new}" if new else None


def migrate_config(config: Any) -> Any:
    """``config`` (a saved PipelineConfig as a dict) with every old key moved to its new name: a copy when anything
    moved, else ``config`` itself. Where both names are present the new one wins."""
    if not renamed_keys(config):
        return config
    out = copy.deepcopy(config)
    for _, kind, section in _sections(out):
        for old, new in RENAMED[kind].items():
            if old in section:
                section.setdefault(new, section.pop(old))
    return out
