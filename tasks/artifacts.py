"""What people see of a stage in the Prefect UI: progress bars, tables, markdown and links to its outputs."""

from __future__ import annotations

import time
from typing import Any, Callable

from core.io import Manifest
from stages.base import Artifact, ConsoleProgress


def try_(fn: Callable[[], Any]) -> Any:
    """Artifacts are for people: never fail a stage because one could not be recorded."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None


class Progress(ConsoleProgress):
    """The console bar plus a Prefect progress artifact, updated at most once a second."""

    def __init__(self, key: str, description: str, total: int):
        from prefect.artifacts import create_progress_artifact

        super().__init__(key, description, total)
        self.artifact_id = try_(lambda: create_progress_artifact(0.0, key=key, description=description))
        self._last = 0.0

    def __call__(self, done: int, total: int | None = None) -> None:
        super().__call__(done, total)
        now = time.monotonic()
        if self.artifact_id and (now - self._last > 1.0 or done >= self.total):
            from prefect.artifacts import update_progress_artifact

            try_(lambda: update_progress_artifact(self.artifact_id, 100.0 * done / self.total))
            self._last = now


def publish_artifacts(stage: str, m: Manifest, artifacts: list[Artifact]) -> None:
    """The stage's own tables and markdown, and a link to each of its outputs."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    for a in artifacts:
        if a.kind == "table":
            try_(lambda: create_table_artifact(a.content, key=a.key, description=a.description))
        else:
            try_(lambda: create_markdown_artifact(a.content, key=a.key, description=a.description))
    for name, o in m.outputs.items():
        key = f"{stage}-{name}".lower().replace("_", "-")
        try_(lambda: create_link_artifact(f"file://{o.path}", link_text=o.path, key=key,
                                          description=f"{stage}: {name} ({o.rows} rows)"))
