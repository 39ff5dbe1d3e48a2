"""How a flow runs a stage task: results persisted under the run's folder, optionally recomputed."""

from __future__ import annotations

from pathlib import Path

from prefect import Task


def stage(task: Task, out: str, refresh: bool = False) -> Task:
    """``task`` with its results stored in ``<out>/cache`` (so deleting ``out`` forgets them)."""
    return task.with_options(result_storage=Path(out).resolve() / "cache", refresh_cache=refresh or None)
