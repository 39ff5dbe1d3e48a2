"""What people see of a stage in the Prefect UI: progress bars, tables, markdown and a table of its outputs.

Artifact keys are global across runs (each new artifact of a key is its next version), so every description
names its run: the preset, the dataset and the output folder (:func:`run_label`). A key always holds one kind of
artifact: ``<stage>-outputs`` (markdown: the stage's files) and ``...-progress`` (progress bars) are reserved, and
the stages' own tables and markdown may use neither suffix (:func:`check_key`).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from core.io import Manifest
from stages.base import Artifact, ConsoleProgress

KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RESERVED = {"progress": "-progress", "outputs": "-outputs"}  # kind -> the key suffix only that kind uses


def try_(fn: Callable[[], Any]) -> Any:
    """Artifacts are for people: never fail a stage because one could not be recorded."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None


def check_key(key: str, kind: str) -> str:
    """``key`` if it is a valid Prefect key that cannot collide with another kind's keys, else ValueError."""
    if not KEY.match(key):
        raise ValueError(f"artifact key {key!r}: lowercase letters, digits and single dashes only")
    suffix = RESERVED.get(kind)
    if suffix is not None and not key.endswith(suffix):
        raise ValueError(f"{kind} artifact key {key!r} must end with {suffix!r}")
    if suffix is None and any(key.endswith(s) for s in RESERVED.values()):
        raise ValueError(f"{kind} artifact key {key!r} ends with a suffix reserved for another kind")
    return key


def run_label(preset: str, dataset: str, out: str) -> str:
    """Which run an artifact belongs to, for its description."""
    return f"run: preset {preset}, dataset {dataset}, out {out}"


class Progress(ConsoleProgress):
    """The console bar plus a Prefect progress artifact, updated at most once a second."""

    def __init__(self, key: str, description: str, total: int, label: str | None = None):
        from prefect.artifacts import create_progress_artifact

        super().__init__(key, description, total)
        text = f"{description} ({label})" if label else description
        self.artifact_id = try_(lambda: create_progress_artifact(0.0, key=check_key(key, "progress"),
                                                                 description=text))
        self._last = 0.0

    def __call__(self, done: int, total: int | None = None) -> None:
        super().__call__(done, total)
        now = time.monotonic()
        if self.artifact_id and (now - self._last > 1.0 or done >= self.total):
            from prefect.artifacts import update_progress_artifact

            try_(lambda: update_progress_artifact(self.artifact_id, 100.0 * done / self.total))
            self._last = now


def outputs_markdown(m: Manifest) -> str:
    """The stage's outputs as a markdown table: name, file (inside the stage folder), rows, content hash."""
    lines = [f"Stage folder `{m.dir}` (key `{m.key}`)", "", "| output | file | rows | sha256 |", "|---|---|---|---|"]
    for name, o in m.outputs.items():
        rel = Path(o.path).relative_to(m.dir) if Path(o.path).is_relative_to(m.dir) else Path(o.path)
        rows = "-" if o.rows is None else f"{o.rows:,}"
        lines.append(f"| {name} | `{rel}` | {rows} | `{o.sha256[:12]}` |")
    return "\n".join(lines)


def publish_artifacts(stage: str, m: Manifest, artifacts: list[Artifact], label: str | None = None) -> None:
    """The stage's own tables and markdown, and the table of its outputs (``<stage>-outputs``)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    def describe(text: str) -> str:
        return f"{text} ({label})" if label else text

    for a in artifacts:
        key = check_key(a.key, a.kind)
        if a.kind == "table":
            try_(lambda: create_table_artifact(a.content, key=key, description=describe(a.description)))
        else:
            try_(lambda: create_markdown_artifact(a.content, key=key, description=describe(a.description)))
    key = check_key(f"{stage}-outputs".lower().replace("_", "-"), "outputs")
    try_(lambda: create_markdown_artifact(outputs_markdown(m), key=key,
                                          description=describe(f"{stage}: its output files")))
