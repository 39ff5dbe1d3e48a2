"""A stage declared once, and how any stage runs as a plain function (no Prefect).

A :class:`Stage` names its upstream stages, the config fields it reads, its run function and its outputs.
From that one declaration come:

- its **key** (:func:`stage_key`): the stage's config fields as JSON + the content fingerprints of its upstream
  manifests + its code version (:func:`stages.code.code_version` of the module defining the run function) +
  the fingerprints of the files it reads from outside the project (``external_files``; ingest: the dataset's). The key names the output folder
  ``<out>/stages/<stage>-<key>/`` and is the Prefect cache key (tasks/stage.py), so the two cannot drift;
- :func:`run_stage`: builds the folder in a temporary sibling, renames it into place, writes ``manifest.json``
  beside the outputs, and reuses a finished folder with the same key;
- the pipeline graph, ``--stage``, the per-stage flows, the deployments and the README's stage table.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

from pydantic import BaseModel

from core.errors import DiscoError, StageInputError
from core.io import Manifest, Output, atomic_path, write_json
from core.paths import ROOT
from stages.code import code_version

MANIFEST = "manifest.json"


class ProgressBar(Protocol):
    def __call__(self, done: int, total: int | None = None) -> None: ...

    def close(self) -> None: ...


# progress(key, description, total) -> a bar; the Prefect wrapper adds a progress artifact to the console bar.
ProgressFactory = Callable[[str, str, int], ProgressBar]


class ConsoleProgress:
    """A console progress bar (tqdm), updated at most once a second."""

    def __init__(self, key: str, description: str, total: int):
        from tqdm.auto import tqdm

        self.total = max(total, 1)
        self.bar = tqdm(total=total, desc=description, leave=False, mininterval=1.0)
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = max(total, 1)
            self.bar.total = total
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self(self.total)
        self.bar.close()


@dataclass(frozen=True)
class Artifact:
    """Something for people to look at in the Prefect UI (a table or markdown), described without Prefect."""

    kind: Literal["table", "markdown"]
    key: str
    content: Any  # table: list of dicts; markdown: str
    description: str


# Where a stage is instanced in a run: "dataset": once per dataset of the run (each training dataset, the evaluation
# dataset); "training": once, over every training dataset (each per-dataset upstream comes as a list, in
# PipelineConfig.training_data's order); "evaluation": once, on the evaluated dataset's instances.
Scope = Literal["dataset", "training", "evaluation"]


@dataclass(frozen=True, eq=False)
class Stage:
    """One stage of the pipeline, declared once.

    ``run(out, work, progress, **fields, **upstream) -> stats`` writes the outputs into the folder ``out`` and
    returns summary numbers; it receives each config field of ``reads`` by its last name (``"teacher.systems"``
    -> ``systems``; ``"rewriter_needed as needed"`` renames), each upstream stage's :class:`Manifest` by the
    stage's name (so distill's and evaluate's ``teacher`` argument is the teacher stage's manifest, or a list of
    them, never the ``teacher`` config section), ``work`` (a folder that survives failures, for resumable work) and
    ``progress`` (a :data:`ProgressFactory`).
    """

    name: str
    summary: str  # one line for the stage table
    upstream: tuple[str, ...]
    reads: tuple[str, ...]  # config fields: "section", "section.field", optionally "... as name"
    outputs: dict[str, str]  # output name -> path inside the stage folder
    run: Callable[..., dict]
    rows: dict[str, str] = field(default_factory=dict)  # output name -> stats key holding its row count
    scope: Scope = "dataset"  # where it is instanced (see Scope)
    external_files: Callable[..., dict] | None = None  # (**fields) -> fingerprints of files outside the project
    artifacts: Callable[[Manifest], list[Artifact]] | None = None
    retries: int = 0
    # upstream stage -> the only outputs of it the run reads (its key follows those alone: the index, which reads
    # the corpus, is reused when only the turns of a growing dataset changed); none: every output
    reads_outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = {field_name(r) for r in self.reads} & set(self.upstream)
        if clash:
            raise ValueError(f"stage {self.name}: config fields {sorted(clash)} have an upstream stage's name; "
                             "rename them with 'section as name'")

    @property
    def module(self) -> str:
        return self.run.__module__

    def code_version(self, root: Path = ROOT) -> str:
        return code_version(self.module, root)


def field_name(path: str) -> str:
    """The run function's argument for a ``reads`` entry: the last name, or the alias after ``as``."""
    path, _, alias = path.partition(" as ")
    return alias.strip() or path.rsplit(".", 1)[-1]


def read_fields(stage: Stage, config: BaseModel) -> dict[str, Any]:
    """The config values ``stage`` reads, by field name (``"teacher.systems"`` -> ``{"systems": [...]}``)."""
    out = {}
    for path in stage.reads:
        value: Any = config
        for part in path.partition(" as ")[0].strip().split("."):
            value = getattr(value, part)
        out[field_name(path)] = value
    return out


def _identity(value: Any, outputs: tuple[str, ...] | None = None) -> Any:
    if isinstance(value, Manifest):
        if outputs is not None:  # only these outputs (Stage.reads_outputs)
            return {name: value.outputs[name].sha256 for name in sorted(outputs)}
        return value.fingerprint()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    return value


Upstream = dict[str, "Manifest | Sequence[Manifest]"]


def stage_key(stage: Stage, fields: dict[str, Any], upstream: Upstream, root: Path = ROOT) -> str:
    """The stage's key: output folder name and Prefect cache key (see the module docstring). ``root``: the
    source tree whose code is hashed (the installed one)."""
    payload = {
        "stage": stage.name,
        "code": stage.code_version(root),
        "config": {k: _identity(v) for k, v in sorted(fields.items())},
        "upstream": {k: _identity(v, stage.reads_outputs.get(k)) for k, v in sorted(upstream.items())},
        "external_files": stage.external_files(**fields) if stage.external_files else {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_dir(out: str | Path, stage: Stage, key: str) -> Path:
    return Path(out).resolve() / "stages" / f"{stage.name}-{key}"


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of a finished stage folder (``<folder>/manifest.json``), after checking its outputs are whole
    (:meth:`core.io.Output.verify`: present, with the file count and size they were written with)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise StageInputError(f"{folder}: not a finished stage folder (no {MANIFEST})")
    try:
        m = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise StageInputError(f"{path}: unreadable manifest ({str(e).splitlines()[0]})") from None
    for o in m.outputs.values():
        o.verify()
    return m


def run_stage(stage: Stage, fields: dict[str, Any], upstream: Upstream, out: str | Path, *,
              key: str | None = None, refresh: bool = False, progress: ProgressFactory = ConsoleProgress
              ) -> Manifest:
    """Run ``stage`` as a plain function: outputs in ``<out>/stages/<stage>-<key>/`` (reused when finished)."""
    key = key or stage_key(stage, fields, upstream)
    final = stage_dir(out, stage, key)
    if not refresh and (final / MANIFEST).exists():
        try:
            return read_manifest(final)
        except StageInputError:
            pass  # an output went missing: rebuild
    work = Path(out).resolve() / "work" / f"{stage.name}-{key}"  # created by the stages that use it
    t0 = time.perf_counter()
    with atomic_path(final) as tmp:
        tmp.mkdir()
        try:
            stats = stage.run(tmp, work, progress, **fields, **upstream)
        except DiscoError:
            raise
        except Exception as e:  # say where it happened; the CLI's boundary shows the note (disco/boundary.py)
            e.add_note(f"in stage {stage.name} (folder {final}; nothing of it was kept)")
            raise
        missing = [rel for rel in stage.outputs.values() if not (tmp / rel).exists()]
        if missing:
            raise RuntimeError(f"stage {stage.name}: run() did not write {missing}")
        outputs = {name: Output.of(name, final / rel, stats.get(stage.rows[name]) if name in stage.rows else None,
                                   at=tmp / rel)
                   for name, rel in stage.outputs.items()}
        m = Manifest(stage=stage.name, key=key, dir=str(final), outputs=outputs,
                     stats={**stats, "stage_seconds": round(time.perf_counter() - t0, 2)})
        write_json(tmp / MANIFEST, m.model_dump(mode="json"))
    return m
