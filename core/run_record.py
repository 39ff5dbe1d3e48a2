"""The run record, ``<out>/run.json``: the configuration a run used and the manifest of every stage it ran.

One typed model (:class:`RunRecord`), written and read only here: the pipeline writes it when a run ends
(stages/runner.py), and everything that opens a finished run reads it through :meth:`RunRecord.read` (``disco
evaluate``, ``search``, ``serve``, ``export``, ``gc``, the rewrite evaluation, the benchmarks), so a field that
is renamed or dropped fails in one place, with a message naming the file, instead of in each reader's dict code.

The configuration's model, :class:`stages.config.PipelineConfig`, lives above this package, so the record is
generic in it: ``RunRecord[PipelineConfig].read(run_dir)`` gives the configuration typed (``disco evaluate``,
``export``); ``RunRecord.read(run_dir)`` keeps it as the JSON object it is, for readers below ``stages/`` and
those that need only the stages (search, gc), and :meth:`RunRecord.section` types one section of it with that
section's own model (``record.section("encoder", SpladeConfig)``). A record that does not parse is a
:class:`~core.errors.DataError` naming the file and the first problem, never a traceback. A record written before
a configuration field was renamed is read with the field under its new name (:func:`core.renames.migrate_config`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from core.errors import DataError, DiscoError
from core.io import Manifest, write_text
from core.renames import migrate_config

NAME = "run.json"
ConfigT = TypeVar("ConfigT")
SectionT = TypeVar("SectionT", bound=BaseModel)


def _problem(e: ValidationError) -> str:
    err = e.errors(include_input=False)[0]
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    where = ".".join(map(str, err["loc"]))
    return f"{where + ': ' if where else ''}{err['msg']}{more}"


def _migrated(raw: bytes) -> bytes:
    """``raw`` (a run.json) with its configuration's renamed fields under their new names; as it is when nothing
    was renamed or it does not parse (validation then names the problem)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return raw
    config = migrate_config(data["config"])
    return raw if config is data["config"] else json.dumps({**data, "config": config}).encode()


class RunRecord(BaseModel, Generic[ConfigT]):
    """``run.json``: ``config`` (the run's :class:`~stages.config.PipelineConfig`) and ``stages`` (the manifest
    of each stage instance it ran, by instance name: ``ingest``, ``eval-ingest``, ``train1-index``, ...)."""

    model_config = ConfigDict(extra="forbid")

    config: ConfigT = Field(description="the run's configuration (stages.config.PipelineConfig)")
    stages: dict[str, Manifest] = Field(description="the manifest of every stage instance the run used")
    _path: Path | None = PrivateAttr(None)

    @staticmethod
    def path(run_dir: str | Path) -> Path:
        return Path(run_dir) / NAME

    @classmethod
    def read(cls, run_dir: str | Path, need: tuple[str, ...] = ()) -> "RunRecord[ConfigT]":
        """The record of the run folder ``run_dir``, with the stages in ``need`` checked to be there."""
        path = cls.path(run_dir)
        if not path.is_file():
            raise DiscoError(f"{path} not found: pass the folder of a finished `disco run`")
        try:
            record = cls.model_validate_json(_migrated(path.read_bytes()))
        except ValidationError as e:
            raise DataError(path, f"not a run record ({_problem(e)}); it is written by `disco run`: rerun that run "
                                  "to rewrite it") from None
        record._path = path
        for stage in need:
            record.manifest(stage)
        return record

    def write(self, out: str | Path) -> Path:
        """``<out>/run.json``, atomically."""
        return write_text(self.path(out), self.model_dump_json(indent=2) + "\n")

    def manifest(self, stage: str) -> Manifest:
        """The manifest of stage instance ``stage``; an error naming the record when the run did not get there."""
        if stage not in self.stages:
            raise DiscoError(f"{self._source}: the run has no {stage} stage (it stopped early): run it to the end")
        return self.stages[stage]

    def output(self, stage: str, name: str) -> Path:
        """The path of output ``name`` of ``stage``, checked to still exist."""
        return self.manifest(stage)[name]

    def section(self, name: str, model: type[SectionT]) -> SectionT:
        """Section ``name`` of the configuration as ``model`` (e.g. ``"encoder"``, ``SpladeConfig``)."""
        data: Any = self.config.model_dump() if isinstance(self.config, BaseModel) else self.config
        try:
            return model.model_validate((data or {}).get(name, {}))
        except ValidationError as e:
            raise DataError(self._source, f"config.{name}: {_problem(e)}") from None

    @property
    def _source(self) -> str:
        """The file this record was read from (for messages)."""
        return str(self._path or NAME)
