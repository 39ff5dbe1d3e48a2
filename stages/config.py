"""Typed pipeline configuration and named presets.

Each stage's module declares its own config (``models.splade_config.SpladeConfig``,
``models.rewrite.RewriteConfig``, ``models.distill_config.DistillConfig``, ``stages.ingest.DataConfig``, ...);
:class:`PipelineConfig` composes them, so the Prefect UI shows the whole run as one form. Every section forbids unknown fields.

Presets are data: one YAML file each under ``stages/presets/`` (``demo``, ``mtrag-un``, ``paper``), with comments
saying why each value was chosen; a preset may ``extends`` another and list only its differences. Each is
validated on load; ``--set a.b=value`` overrides any field and the result is validated again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from core.errors import DiscoError
from core.renames import renamed_keys, renamed_path
from models.distill_config import DistillConfig
from models.rewrite.config import RewriteConfig
from models.rewriter.config import RewriterConfig
from models.splade_config import SpladeConfig
from retrieval.ingest import SplitConfig
from stages.evaluate import EvalConfig
from stages.index import IndexConfig
from stages.ingest import DataConfig
from stages.teacher import TeacherConfig, teacher_name


class RunnerConfig(BaseModel):
    """Where the shards of corpus encoding, teacher retrieval and LLM rewriting run. Read by no stage, so it
    changes no stage key: the same configuration gives the same outputs on either runner."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = Field("local", description="local: here, one shard after the other; ray: each "
                                                               "shard a Prefect task on a Ray cluster")
    address: str | None = Field(None, description="Ray cluster (e.g. ray://head:10001); none: a local cluster")
    workers: int = Field(2, ge=1, description="CPUs of the local cluster")


class PipelineConfig(BaseModel):
    """A run's whole configuration: one section per stage config, the datasets, the runner. The stages of an extra
    training dataset and of the evaluation dataset read views of it (:meth:`extra_config`, :meth:`eval_config`)
    whose derived fields (split, teacher.systems) are computed there, never given: setting them is an error."""

    model_config = ConfigDict(extra="forbid")

    name: str = "demo"
    data: DataConfig = DataConfig()
    encoder: SpladeConfig = SpladeConfig()
    rewriter: RewriterConfig = RewriterConfig()
    rewrite: RewriteConfig = RewriteConfig()
    index: IndexConfig = IndexConfig()
    teacher: TeacherConfig = TeacherConfig()
    distill: DistillConfig = DistillConfig()
    evaluate: EvalConfig = EvalConfig()
    eval_data: DataConfig | None = Field(None, description="zero-shot: evaluate on this dataset instead of "
                                                           "the held-out split of `data`")
    runner: RunnerConfig = RunnerConfig()
    extra_data: list[DataConfig] = Field([], description="more training datasets, pooled with the train turns of "
                                                         "`data` (each with its own corpus, index and teacher runs)")

    @model_validator(mode="before")
    @classmethod
    def _no_old_names(cls, data: Any) -> Any:
        """A key under its name before a rename (core/renames.py) is one error naming the new key, not "extra
        inputs are not permitted" (saved configurations are migrated on read, core/run_record.py)."""
        renamed = renamed_keys(data)
        if renamed:
            raise PydanticCustomError("renamed", "; ".join(renamed))
        return data

    @model_validator(mode="after")
    def _known_teacher(self) -> "PipelineConfig":
        teacher_name(self.rewrite.name)
        if self.rewrite.model == "rewriter" and self.rewriter.mode == "off":
            raise ValueError("rewrite.model 'rewriter' names the rewriter stage's model, but rewriter.mode is 'off' "
                             "(packaged: the adapter the project ships; train: fine-tune here)")
        for field, name in [("distill.learn_from", self.distill.learn_from),
                            *(("distill.search.learn_from", n) for n in self.distill.search.learn_from)]:
            if name not in (*self.teacher.systems, "fused"):
                raise ValueError(f"{field} {name!r} is neither 'fused' nor one of teacher.systems "
                                 f"{self.teacher.systems}")
        for where, d in (("data", self.data), ("eval_data", self.eval_data)):
            if d is not None and d.learn_from is not None:
                raise ValueError(f"{where}.learn_from: only a pooled training dataset (extra_data) has its own "
                                 f"teacher; `data` learns from distill.learn_from ({self.distill.learn_from!r})")
        if self.eval_data is not None and self.eval_data.split != SplitConfig():
            raise ValueError("eval_data.split: every turn of the evaluation dataset is held out (derived, see "
                             "PipelineConfig.eval_config); leave the split out")
        for i, d in enumerate(self.extra_data):
            if d.split != SplitConfig():
                raise ValueError(f"extra_data[{i}].split: an extra training dataset's split is derived (every "
                                 "conversation trains; with distill.dev_datasets='all' data.split.dev_fraction of "
                                 "them choose the epoch; see PipelineConfig.training_data); leave it out")
            if d.learn_from not in (None, "fused"):
                try:
                    teacher_name(d.learn_from)
                except ValueError as e:
                    raise ValueError(f"extra_data[{i}].learn_from: {e}") from None
        return self

    @property
    def source_teachers(self) -> list[str]:
        """Whom each training dataset's examples learn from (:meth:`training_data`'s order): ``distill.learn_from``
        unless a pooled dataset names its own (its ``learn_from``)."""
        return [d.learn_from or self.distill.learn_from for d in self.training_data()]

    @property
    def rewriter_needed(self) -> bool:
        """Whether the rewriter stage must make its model: ``rewrite.model`` names it and some dataset of the run
        computes an LLM teacher (runs that learn from human rewrites only skip the merge)."""
        return self.rewrite.model == "rewriter" and self.rewriter.mode != "off" and "rewriter.base" in self.models()

    def models(self) -> dict[str, str]:
        """The model names a run loads, by field: ``encoder.model``, and ``rewrite.model`` where an LLM teacher
        (``rewrite.name`` or its ``+answer`` variant) is computed for some dataset."""
        llm = {self.rewrite.name, f"{self.rewrite.name}+answer"}
        computed = set(self.teacher.systems)  # `data` (and `eval_data`) compute every teacher; an extra its own
        computed |= {t for d in self.training_data()[1:] for t in self.extra_config(d).teacher.systems}
        out = {"encoder.model": self.encoder.model}
        if computed & llm:
            if self.rewrite.model == "rewriter":  # the rewriter stage's output, made from rewriter.base
                out["rewriter.base"] = self.rewriter.base
            else:
                out["rewrite.model"] = self.rewrite.model
        return out

    def check_models(self) -> None:
        """Resolve every model name before anything runs, so that a mistyped folder or a missing package stops
        the run at once, not after the stages before the one loading it (hub ids are checked when loaded); and
        the packaged rewriter adapter against the prompt rewriting will use (stages/rewriter.py: check_adapter)."""
        from models.weights import resolve

        for field, name in self.models().items():
            try:
                resolve(name)
            except DiscoError as e:
                raise DiscoError(f"{field}: {e}") from None
        if self.rewriter_needed and self.rewriter.mode == "packaged":  # its prompt, before the run, not at its stage
            from stages.rewriter import check_adapter

            check_adapter(self.rewriter, self.rewrite.prompt)

    def training_data(self) -> list[DataConfig]:
        """Every training dataset: ``data`` first, then ``extra_data`` with its derived split: none of their
        turns are test turns; with ``distill.dev_datasets="all"`` each keeps ``data``'s dev fraction of its
        conversations for model selection, else every turn of it trains."""
        dev = self.data.split.dev_fraction if self.distill.dev_datasets == "all" else 0.0
        split = SplitConfig(method="conversation", test_fraction=0.0, dev_fraction=dev, seed=self.data.split.seed)
        return [self.data, *(_with(d, split=split) for d in self.extra_data)]

    def extra_config(self, data: DataConfig) -> "PipelineConfig":
        """The view the stages of an extra training dataset ``data`` (one of :meth:`training_data`) read: the same
        models and settings, its own data, and only the teacher runs its examples learn from (``data.learn_from``,
        else ``distill.learn_from``; no LLM rewriting of it unless the student needs it). Its sections are
        validated; the run's cross-section rules were checked on the run's own configuration."""
        own = data.learn_from or self.distill.learn_from
        teacher = _with(self.teacher, systems=self.teacher.systems if own == "fused" else [own],
                        fuse=self.teacher.fuse if own == "fused" else None)
        return self.model_copy(update={"data": data, "eval_data": None, "extra_data": [], "teacher": teacher})

    def eval_config(self) -> "PipelineConfig":
        """The view the evaluation dataset's stages read: ``eval_data`` with every turn held out, the same models
        otherwise (the run's own configuration when there is no ``eval_data``)."""
        if self.eval_data is None:
            return self
        data = _with(self.eval_data, split=SplitConfig(method="conversation", test_fraction=1.0))
        return self.model_copy(update={"data": data, "eval_data": None, "extra_data": []})


_Section = TypeVar("_Section", bound=BaseModel)


def _with(section: _Section, **fields) -> _Section:
    """A config section with ``fields`` replaced, validated again (``model_copy(update=...)`` would not)."""
    return type(section).model_validate({**section.model_dump(), **fields})


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names(folder: Path = PRESETS_DIR) -> list[str]:
    """The named presets: one file each, ``stages/presets/<name>.yaml``."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _preset_file(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DiscoError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise DiscoError(f"{path}: a preset is a mapping of config sections, got {type(data).__name__}")
    return data


def _merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged section by section (a mapping merges field by field; anything else,
    lists included, replaces)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _validated(data: dict, where: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(err["msg"] if err["type"] == "renamed" else
                             f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        raise DiscoError(f"{where}: {problems}") from None


def preset(name: str, folder: Path = PRESETS_DIR, _seen: tuple[str, ...] = ()) -> PipelineConfig:
    """The preset ``stages/presets/<name>.yaml``, validated. A preset naming another in ``extends`` lists only its
    differences: they are merged into the other (itself validated first) and the result validated again."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise DiscoError(f"unknown preset {name!r}; known: {', '.join(preset_names(folder))}")
    if name in _seen:
        raise DiscoError(f"{path}: presets extend each other in a cycle: {' -> '.join((*_seen, name))}")
    data = _preset_file(path)
    parent = data.pop("extends", None)
    if parent is not None:
        data = _merge(preset(str(parent), folder, (*_seen, name)).model_dump(), data)
    return _validated(data, str(path))


def data_spec(spec: str | Path, default_format: str) -> DataConfig:
    """A ``--data`` value: ``PATH`` (the default format) or ``FORMAT:PATH`` (e.g. ``mtrag-un:../shared/data/mtrag``)."""
    from retrieval.datasets import READERS

    text = str(spec)
    fmt, sep, rest = text.partition(":")
    if sep and fmt in READERS:
        return DataConfig(format=fmt, path=str(Path(rest).resolve()))
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]+", fmt) and not Path(text).exists():  # not a drive letter
        raise DiscoError(f"--data {text}: unknown dataset format {fmt!r}; known: {', '.join(sorted(READERS))} "
                         f"(a folder whose name holds ':' is given as ./{text})")
    return DataConfig(format=default_format, path=str(Path(text).resolve()))


def apply_overrides(cfg: PipelineConfig, overrides: list[str]) -> PipelineConfig:
    """Apply ``key.sub=value`` overrides (values parsed as JSON when they parse, else kept as strings)."""
    data = cfg.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise DiscoError(f"--set {item!r}: expected key=value, e.g. distill.lr=1e-4")
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise DiscoError(f"--set {item!r}: {p!r} is not a config section")
            node = node[p]
        if parts[-1] not in node:
            if renamed_path(parts):
                raise DiscoError(f"--set {item!r}: {key.strip()} was renamed to {renamed_path(parts)}")
            raise DiscoError(f"--set {item!r}: unknown field {parts[-1]!r}; fields here: {', '.join(node)}")
        try:
            node[parts[-1]] = json.loads(raw)
        except json.JSONDecodeError:
            node[parts[-1]] = raw
    return _validated(data, "invalid --set override")


def load(name: str, data: str | Sequence[str] | None = None, overrides: list[str] = (),
         eval_data: str | None = None, eval_format: str | None = None) -> PipelineConfig:
    """A preset with ``--data`` / ``--eval-data`` and ``--set`` overrides applied.

    Several ``data`` folders pool their training turns: the first is ``data`` (split into train / dev / test
    as configured), the others ``extra_data`` (all train), each ``PATH`` or ``FORMAT:PATH`` (:func:`data_spec`). With ``eval_data`` (zero-shot, as in the paper: train on one
    dataset, evaluate on another), the student trains on every turn of ``data`` and is evaluated on every turn
    of ``eval_data``.
    """
    cfg = preset(name).model_dump()
    paths = [data] if isinstance(data, (str, Path)) else list(data or [])
    if paths:
        first = data_spec(paths[0], cfg["data"]["format"])
        cfg["data"] = {**cfg["data"], "format": first.format, "path": first.path}
        if len(paths) > 1:  # otherwise the preset's extra datasets stay (`--set extra_data=[]` drops them)
            cfg["extra_data"] = [data_spec(p, first.format).model_dump() for p in paths[1:]]
    if eval_data is not None:
        cfg["eval_data"] = {"format": eval_format or cfg["data"]["format"], "path": str(Path(eval_data).resolve())}
        # every conversation of `data` trains, but for the dev share that chooses the best epoch
        cfg["data"]["split"] = {"method": "conversation", "test_fraction": 0.0,
                                "dev_fraction": cfg["data"]["split"]["dev_fraction"]}
    return apply_overrides(_validated(cfg, f"preset {name} with --data / --eval-data"), list(overrides))
