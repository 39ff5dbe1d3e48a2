"""Typed pipeline configuration and named presets.

Each stage's module declares its own config (``models.splade_config.SpladeConfig``,
``models.rewrite.RewriteConfig``, ``models.distill_config.DistillConfig``, ``stages.ingest.DataConfig``, ...);
:class:`PipelineConfig` composes them, so the Prefect UI shows the whole run as one form. Presets differ in a few
lines; ``--set a.b=value`` overrides any field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Literal, Sequence

from pydantic import BaseModel, Field, ValidationError, model_validator

from core.errors import DiscoError
from core.paths import DEMO_DATA
from models.conversation import StudentInput
from models.distill_config import DistillConfig
from models.rewrite.prompt import RewriteConfig
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

    kind: Literal["local", "ray"] = Field("local", description="local: here, one shard after the other; ray: each "
                                                               "shard a Prefect task on a Ray cluster")
    address: str | None = Field(None, description="Ray cluster (e.g. ray://head:10001); none: a local cluster")
    workers: int = Field(2, ge=1, description="CPUs of the local cluster")


class PipelineConfig(BaseModel):
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

    @model_validator(mode="after")
    def _known_teacher(self) -> "PipelineConfig":
        teacher_name(self.rewrite.teacher)
        if self.rewrite.model == "rewriter" and self.rewriter.mode == "off":
            raise ValueError("rewrite.model 'rewriter' names the rewriter stage's model, but rewriter.mode is 'off' "
                             "(packaged: the adapter the project ships; train: fine-tune here)")
        if self.distill.teacher not in (*self.teacher.teachers, "fused"):
            raise ValueError(f"distill.teacher {self.distill.teacher!r} is neither 'fused' nor one of "
                             f"teacher.teachers {self.teacher.teachers}")
        for where, d in (("data", self.data), ("eval_data", self.eval_data)):
            if d is not None and d.teacher is not None:
                raise ValueError(f"{where}.teacher: only a pooled training dataset (extra_data) has its own "
                                 f"teacher; `data` learns from distill.teacher ({self.distill.teacher!r})")
        for i, d in enumerate(self.extra_data):
            if d.teacher not in (None, "fused"):
                try:
                    teacher_name(d.teacher)
                except ValueError as e:
                    raise ValueError(f"extra_data[{i}].teacher: {e}") from None
        return self

    @property
    def source_teachers(self) -> list[str]:
        """Whom each training dataset's examples learn from (:meth:`training_data`'s order): ``distill.teacher``
        unless a pooled dataset names its own."""
        return [d.teacher or self.distill.teacher for d in self.training_data()]

    @property
    def rewriter_needed(self) -> bool:
        """Whether the rewriter stage must make its model: ``rewrite.model`` names it and some dataset of the run
        computes an LLM teacher (runs that learn from human rewrites only skip the merge)."""
        return self.rewrite.model == "rewriter" and self.rewriter.mode != "off" and "rewriter.base" in self.models()

    def models(self) -> dict[str, str]:
        """The model names a run loads, by field: ``encoder.model``, and ``rewrite.model`` where an LLM teacher
        (``rewrite.teacher`` or its ``+answer`` variant) is computed for some dataset."""
        llm = {self.rewrite.teacher, f"{self.rewrite.teacher}+answer"}
        computed = set(self.teacher.teachers)  # `data` (and `eval_data`) compute every teacher; an extra its own
        computed |= {t for d in self.training_data()[1:] for t in self.for_data(d).teacher.teachers}
        out = {"encoder.model": self.encoder.model}
        if computed & llm:
            if self.rewrite.model == "rewriter":  # the rewriter stage's output, made from rewriter.base
                out["rewriter.base"] = self.rewriter.base
            else:
                out["rewrite.model"] = self.rewrite.model
        return out

    def check_models(self) -> None:
        """Resolve every model name before anything runs, so that a mistyped folder or a missing package stops
        the run at once, not after the stages before the one loading it (hub ids are checked when loaded)."""
        from models.weights import resolve

        for field, name in self.models().items():
            try:
                resolve(name)
            except DiscoError as e:
                raise DiscoError(f"{field}: {e}") from None

    def training_data(self) -> list[DataConfig]:
        """Every training dataset: ``data`` first, then ``extra_data``, none of whose turns are test turns; with
        ``distill.dev_datasets="all"`` each keeps ``data``'s dev fraction of its conversations for model selection,
        else every turn of it trains."""
        dev = self.data.split.dev_fraction if self.distill.dev_datasets == "all" else 0.0
        extra = [d.model_copy(update={"split": SplitConfig(method="conversation", test_fraction=0.0,
                                                           dev_fraction=dev, seed=self.data.split.seed)})
                 for d in self.extra_data]
        return [self.data, *extra]

    def for_data(self, data: DataConfig) -> "PipelineConfig":
        """The same models and settings on an extra training dataset (its own stages). Only the teacher runs
        the student learns from are computed there (no LLM rewriting of it unless the student needs it)."""
        own = data.teacher or self.distill.teacher
        teachers = self.teacher.teachers if own == "fused" else [own]
        fuse = self.teacher.fuse if own == "fused" else None
        return self.model_copy(update={"data": data, "eval_data": None, "extra_data": [],
                                       "teacher": self.teacher.model_copy(update={"teachers": teachers,
                                                                                  "fuse": fuse})})

    def target(self) -> "PipelineConfig":
        """The configuration evaluated on: ``eval_data`` with every turn held out, the same models otherwise."""
        if self.eval_data is None:
            return self
        data = self.eval_data.model_copy(update={"split": SplitConfig(method="conversation", test_fraction=1.0)})
        return self.model_copy(update={"data": data, "eval_data": None, "extra_data": []})


def _demo() -> PipelineConfig:
    return PipelineConfig(
        name="demo",
        # The LLM teacher is SmolLM2-135M fine-tuned with LoRA on public rewrite data (CANARD, TREC CAsT 2019 /
        # 2022, the demo's train turns): the adapter the project ships (data/rewriter/; its card says how it was
        # trained, `--set rewriter.mode=train` trains it again), merged into the base model by the rewriter stage.
        # It reads the short prompt it was trained on (no instruction, history up to 1,000 characters). Prompted,
        # SmolLM2 mostly answered instead of rewriting (docs/results.md, "Rewrite quality"); the output checks
        # (a rewrite that is not a query, drops words of the utterance or grows by more than 12 falls back to the
        # utterance) stay on. fp32: bf16 is emulated on CPUs without AVX-512 BF16 / AMX ("Demo wall time").
        rewriter=RewriterConfig(mode="packaged"),
        rewrite=RewriteConfig(teacher="llm", model="rewriter", prompt="compact", max_new_tokens=40, batch_size=8,
                              max_history_chars=1000, dtype="float32", output_checks=True),
        # A dev split (20% of the train conversations; the test conversations do not change) chooses the
        # student's best epoch.
        data=DataConfig(split=SplitConfig(dev_fraction=0.2)),
        # The student learns from the fine-tuned LLM teacher: chosen on the dev split (36 judged turns, RR@10 of the
        # kept student: llm 0.902, human 0.879, fused human + llm 0.878; docs/results.md, "The LLM teaches").
        # `answer` is the privileged question + answer teacher, computed and reported.
        # `fused` averages the human and LLM teachers (the paper's multi-teacher distillation), not the privileged
        # answer teacher.
        teacher=TeacherConfig(teachers=["human", "llm", "answer"], fuse=["human", "llm"]),
        # Chosen on the dev split (docs/results.md): the user's turns only (the agent's answers drown the
        # question: the untrained encoder scores 0.659 on them against 0.395 on the paper's format), a stronger
        # in-batch term, and a number of steps with the best epoch kept; then the best mix of that epoch's weights
        # with the starting encoder's (WiSE-FT; alpha 1.0, the epoch itself, is one of the choices, so dev never
        # loses by it).
        distill=DistillConfig(teacher="llm", input=StudentInput(answers=False), lr=1e-4, batch_size=8, steps=200,
                              warmup_ratio=0.05, contrastive_weight=0.1, interpolate=[0.25, 0.5, 0.75, 1.0]),
    )


def _mtrag_un() -> PipelineConfig:
    cfg = _demo()
    cfg.name = "mtrag-un"
    cfg.data = DataConfig(format="mtrag-un", path="../shared/data/mtrag", split=SplitConfig(dev_fraction=0.2))
    # pooled training data (chosen on dev, docs/results.md): the embedded demo's conversations too
    cfg.extra_data = [DataConfig(format="disco", path=str(DEMO_DATA))]
    # MTRAG-UN has no human rewrites: the LLM's run is computed and reported, and the student learns from the
    # privileged teacher (the question with the reference answer, which the student never sees)
    cfg.teacher = TeacherConfig(teachers=["llm", "answer"])
    cfg.distill.teacher = "answer"
    return cfg


def _paper() -> PipelineConfig:
    """The paper's setting on a GPU machine with a model hub (Lupart et al. 2025, sec. 4)."""
    return PipelineConfig(
        name="paper",
        encoder=SpladeConfig(model="naver/splade-cocondenser-ensembledistil", batch_size=128),
        rewrite=RewriteConfig(backend="vllm", model="mistralai/Mistral-7B-Instruct-v0.2", teacher="mistral",
                              batch_size=256, dtype="auto"),
        teacher=TeacherConfig(teachers=["human", "mistral"]),
        # the authors' sampling (ranks 11..960, rank-11 positive score) and fp16 with loss scaling (CUDA)
        distill=DistillConfig(negative_window=(11, 960), positive_score="rank11", precision="fp16"),
    )


PRESETS: dict[str, Callable[[], PipelineConfig]] = {"demo": _demo, "mtrag-un": _mtrag_un, "paper": _paper}


def preset(name: str) -> PipelineConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise DiscoError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


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
            raise DiscoError(f"--set {item!r}: unknown field {parts[-1]!r}; fields here: {', '.join(node)}")
        try:
            node[parts[-1]] = json.loads(raw)
        except json.JSONDecodeError:
            node[parts[-1]] = raw
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        raise DiscoError(f"invalid --set override: {problems}") from None


def load(name: str, data: str | Sequence[str] | None = None, overrides: list[str] = (),
         eval_data: str | None = None, eval_format: str | None = None) -> PipelineConfig:
    """A preset with ``--data`` / ``--eval-data`` and ``--set`` overrides applied.

    Several ``data`` folders pool their training turns: the first is ``data`` (split into train / dev / test
    as configured), the others ``extra_data`` (all train), each ``PATH`` or ``FORMAT:PATH`` (:func:`data_spec`). With ``eval_data`` (zero-shot, as in the paper: train on one
    dataset, evaluate on another), the student trains on every turn of ``data`` and is evaluated on every turn
    of ``eval_data``.
    """
    cfg = preset(name)
    paths = [data] if isinstance(data, (str, Path)) else list(data or [])
    if paths:
        first = data_spec(paths[0], cfg.data.format)
        cfg.data.format, cfg.data.path = first.format, first.path
        if len(paths) > 1:  # otherwise the preset's extra datasets stay (`--set extra_data=[]` drops them)
            cfg.extra_data = [data_spec(p, cfg.data.format) for p in paths[1:]]
    if eval_data is not None:
        cfg.eval_data = DataConfig(format=eval_format or cfg.data.format, path=str(Path(eval_data).resolve()))
        # every conversation of `data` trains, but for the dev share that chooses the best epoch
        cfg.data.split = SplitConfig(method="conversation", test_fraction=0.0,
                                     dev_fraction=cfg.data.split.dev_fraction)
    return apply_overrides(cfg, list(overrides))
