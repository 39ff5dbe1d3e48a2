"""The configuration: every section forbids unknown fields, presets are validated data files, derived fields are
computed, never silently overwritten."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from core.errors import DiscoError
from stages.config import PRESETS_DIR, PipelineConfig, apply_overrides, preset, preset_names


def _models(model: type[BaseModel], seen: set | None = None) -> set[type[BaseModel]]:
    """``model`` and every pydantic model its fields reach (through lists, dicts, unions and optionals)."""
    seen = set() if seen is None else seen
    if model in seen:
        return seen
    seen.add(model)

    def walk(tp) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            _models(tp, seen)
        for arg in typing.get_args(tp):
            walk(arg)

    for f in model.model_fields.values():
        walk(f.annotation)
    return seen


def test_every_config_model_forbids_unknown_fields():
    models = _models(PipelineConfig)
    names = {m.__name__ for m in models}
    assert {"DataConfig", "SplitConfig", "TeacherConfig", "DistillConfig", "StudentInput", "RewriteConfig",
            "RewriterConfig", "RunnerConfig", "SpladeConfig", "IndexConfig", "EvalConfig"} <= names, names
    lax = sorted(m.__name__ for m in models if m.model_config.get("extra") != "forbid")
    assert not lax, f"config models accepting unknown fields (a typo would be ignored): {lax}"


def test_a_mistyped_field_is_an_error_at_any_depth():
    with pytest.raises(DiscoError, match="extra_data.0.split.dev_fracton"):
        apply_overrides(preset("demo"), ['extra_data=[{"split": {"dev_fracton": 0.2}}]'])
    with pytest.raises(DiscoError, match=r"distill\.lrr: Extra inputs are not permitted"):
        apply_overrides(preset("demo"), ['distill={"lrr": 1}'])


def test_presets_are_the_files_with_their_key_values():
    assert preset_names() == ["demo", "mtrag-un", "paper"]
    demo, mtrag, paper = (preset(n) for n in preset_names())
    assert (demo.name, demo.rewriter.mode, demo.rewrite.model, demo.rewrite.prompt) == (
        "demo", "packaged", "rewriter", "compact")
    assert demo.teacher.systems == ["human", "llm", "answer"] and demo.teacher.fuse == ["human", "llm"]
    assert (demo.distill.learn_from, demo.distill.lr, demo.distill.steps, demo.distill.interpolate) == (
        "llm", 1e-4, 200, [0.25, 0.5, 0.75, 1.0])
    assert demo.data.split.dev_fraction == 0.2 and demo.distill.input.answers is False
    # mtrag-un extends demo: its differences, the rest inherited
    assert (mtrag.data.format, mtrag.data.path, mtrag.teacher.systems, mtrag.teacher.fuse, mtrag.distill.learn_from) == (
        "mtrag-un", "../shared/data/mtrag", ["llm", "answer"], None, "answer")
    assert mtrag.extra_data[0].format == "disco" and mtrag.extra_data[0].path == PipelineConfig().data.path
    search = demo.distill.search.model_copy(update={"learn_from": ["answer", "fused", "llm"], "lambda_q": [0.003, 0.01]})
    assert mtrag.distill.model_dump() == demo.distill.model_copy(  # its own teacher and weight chosen on its dev turns,
        update={"learn_from": "answer", "lambda_q": 0.003, "search": search,  # and a soup of four seeds
                "soup_seeds": [1, 2, 3]}).model_dump()
    assert (demo.distill.lambda_q, demo.distill.max_terms_ratio, len(demo.distill.search.input)) == (0.01, 1.2, 3)
    assert mtrag.rewrite == demo.rewrite
    assert (paper.encoder.model, paper.rewrite.backend, paper.distill.negative_window, paper.distill.precision) == (
        "naver/splade-cocondenser-ensembledistil", "vllm", (11, 960), "fp16")


def test_a_bad_preset_file_is_a_clear_error_naming_it(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ndistill:\n  lr: 1.0e-4\n")
    (tmp_path / "child.yaml").write_text("extends: base\nname: child\ndistill:\n  steps: 3\n")
    child = preset("child", tmp_path)
    assert (child.name, child.distill.lr, child.distill.steps) == ("child", 1e-4, 3)
    (tmp_path / "typo.yaml").write_text("extends: base\ndistil:\n  steps: 3\n")
    with pytest.raises(DiscoError, match=r"typo\.yaml: distil: Extra inputs are not permitted"):
        preset("typo", tmp_path)
    (tmp_path / "loop.yaml").write_text("extends: loop\n")
    with pytest.raises(DiscoError, match="cycle: loop -> loop"):
        preset("loop", tmp_path)
    (tmp_path / "broken.yaml").write_text("distill: [1\n")
    with pytest.raises(DiscoError, match=r"broken\.yaml: not valid YAML"):
        preset("broken", tmp_path)
    # the merged result is validated again: demo's student learns from `llm`, which this child no longer computes
    (tmp_path / "demo.yaml").write_text((PRESETS_DIR / "demo.yaml").read_text())
    (tmp_path / "half.yaml").write_text("extends: demo\nteacher:\n  systems: [human]\n  fuse: null\n")
    with pytest.raises(DiscoError, match=r"half\.yaml: config: .*distill\.learn_from 'llm' is neither"):
        preset("half", tmp_path)
    # a searched teacher must be computed too
    with pytest.raises(DiscoError, match=r"distill\.search\.learn_from 'nobody' is neither 'fused' nor one of"):
        apply_overrides(preset("demo"), ['distill.search.learn_from=["llm", "nobody"]'])
    assert apply_overrides(preset("demo"), ['distill.search.learn_from=["llm", "fused"]']).distill.search.learn_from \
        == ["llm", "fused"]


def test_derived_splits_are_refused_when_given():
    """An extra training dataset's split and the evaluation dataset's split are derived: giving one is an error,
    not a value silently replaced."""
    with pytest.raises(DiscoError, match=r"extra_data\[0\]\.split: an extra training dataset's split is derived"):
        apply_overrides(preset("demo"), ['extra_data=[{"split": {"test_fraction": 0.5}}]'])
    with pytest.raises(DiscoError, match=r"eval_data\.split: every turn of the evaluation dataset is held out"):
        apply_overrides(preset("demo"), ['eval_data={"split": {"test_fraction": 0.5}}'])
    cfg = apply_overrides(preset("demo"), ['extra_data=[{"learn_from": "human"}]', 'eval_data={}'])
    extra = cfg.training_data()[1]
    assert extra.split.test_fraction == 0.0 and cfg.extra_config(extra).teacher.systems == ["human"]
    assert cfg.eval_config().data.split.test_fraction == 1.0 and cfg.eval_config().extra_data == []
