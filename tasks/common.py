"""What every stage task shares: its cache key, its output folder, progress and artifacts.

Cache key = stage name + the stage's code version (a hash of the source files the stage runs, helpers
included: Prefect's TASK_SOURCE only sees the decorated function) + the stage's config as JSON + the content
fingerprints of the upstream manifests + the output folder. So a rerun with nothing changed is served from
cache, and a change to one stage's config or code reruns that stage and, through the changed fingerprints,
what follows. Each stage writes into ``<out>/stages/<stage>-<key>/``, built in a temporary folder and renamed
into place, so a killed run leaves no half-written stage behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

from disco.io import Manifest, Output

# The modules whose source defines each stage's result (packages include all their files).
STAGE_CODE: dict[str, list[str]] = {
    "ingest": ["disco.ingest", "disco.datasets", "disco.schema", "tasks.ingest"],
    "rewrite": ["models.rewrite", "models.weights", "tasks.rewrite"],
    "index": ["models.splade", "models.weights", "disco.index", "tasks.index"],
    "teacher": ["models.splade", "disco.index", "disco.runs", "tasks.teacher"],
    "distill": ["models.distill", "models.distill_config", "models.examples", "models.losses",
                "models.conversation", "models.selection", "models.student", "models.splade", "models.weights",
                "tasks.distill"],
    "evaluate": ["models.splade", "models.conversation", "models.student", "models.weights", "disco.index",
                 "disco.evaluation", "disco.runs", "disco.report", "tasks.evaluate"],
}


def code_version(stage: str) -> str:
    h = hashlib.sha256()
    for module in STAGE_CODE[stage]:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"stage {stage}: module {module} not found")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _identity(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    if isinstance(value, Manifest):
        return value.fingerprint()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value.resolve())
    return value


def stage_key(stage: str, inputs: dict[str, Any]) -> str:
    payload = {"stage": stage, "code": code_version(stage)}
    payload.update({k: _identity(v) for k, v in sorted(inputs.items()) if k != "refresh"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageCache(CachePolicy):
    """Cache policy keyed by :func:`stage_key` (see the module docstring)."""

    stage: str = ""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str:
        return f"{self.stage}-{stage_key(self.stage, inputs)}"


def stage_dir(stage: str, out: str, inputs: dict[str, Any]) -> tuple[str, Path]:
    key = stage_key(stage, {"out": out, **inputs})
    return key, Path(out).resolve() / "stages" / f"{stage}-{key}"


def work_dir(stage: str, out: str, key: str) -> Path:
    """A folder that survives failures of the stage (resumable work, e.g. rewrite parts)."""
    path = Path(out).resolve() / "work" / f"{stage}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def manifest(stage: str, key: str, final_dir: Path, outputs: dict[str, tuple[str, int | None]],
             stats: dict[str, Any]) -> Manifest:
    """Build the manifest of a finished stage: ``outputs`` maps name -> (path relative to the stage dir, rows)."""
    return Manifest(
        stage=stage,
        key=key,
        dir=str(final_dir),
        outputs={n: Output.of(n, final_dir / rel, rows) for n, (rel, rows) in outputs.items()},
        stats=stats,
    )


class Progress:
    """A console bar plus a Prefect progress artifact, updated at most once a second."""

    def __init__(self, key: str, description: str, total: int):
        from prefect.artifacts import create_progress_artifact
        from tqdm.auto import tqdm

        self.total = max(total, 1)
        self.bar = tqdm(total=total, desc=description, leave=False, mininterval=1.0)
        self.artifact_id = _try(lambda: create_progress_artifact(0.0, key=key, description=description))
        self._last = 0.0
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = max(total, 1)
            self.bar.total = total
        self.bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self.artifact_id and (now - self._last > 1.0 or done >= self.total):
            from prefect.artifacts import update_progress_artifact

            _try(lambda: update_progress_artifact(self.artifact_id, 100.0 * done / self.total))
            self._last = now

    def close(self) -> None:
        self(self.total)
        self.bar.close()


def _try(fn: Callable[[], Any]) -> Any:
    """Artifacts are for people: never fail a stage because one could not be recorded."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None


def table_artifact(key: str, rows: list[dict], description: str) -> None:
    from prefect.artifacts import create_table_artifact

    _try(lambda: create_table_artifact(rows, key=key, description=description))


def markdown_artifact(key: str, markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    _try(lambda: create_markdown_artifact(markdown, key=key, description=description))


def link_artifacts(stage: str, m: Manifest) -> None:
    from prefect.artifacts import create_link_artifact

    for name, o in m.outputs.items():
        key = f"{stage}-{name}".lower().replace("_", "-")
        _try(lambda: create_link_artifact(f"file://{o.path}", link_text=o.path, key=key,
                                          description=f"{stage}: {name} ({o.rows} rows)"))
