"""The command line: help everywhere, configs, and clear errors instead of tracebacks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from disco.cli import app
from stages.config import apply_overrides, load, preset
from core.errors import DiscoError

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["run"], ["config"], ["presets"], ["stages"], ["ui"], ["evaluate"]])
def test_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


COMMANDS = ["run", "evaluate", "rewrite-eval", "config", "presets", "stages", "search", "serve", "export", "gc", "ui",
            "deploy", "encode"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=lambda c: " ".join(c) or "disco")
def test_help_reads_as_a_person_expects(command):
    """Flags take no value, so no type after them; arguments are named RUN_DIR on the usage line (not {run_dir});
    a choice lists its values; repeatable options name what they take."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    text = result.output
    assert result.exit_code == 0, text
    assert "<bool>" not in text and "list[" not in text, text
    assert "--help " in text and "Show this message" in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "[OPTIONS]" in usage, usage
    if command and command[0] in ("search", "serve", "export", "gc", "evaluate"):
        assert "RUN_DIR" in usage and "run_dir" not in text, usage
    if command and command[0] in ("search", "serve"):
        assert "<auto|lucene|sparse>" in text and "<str>" not in text.split("--backend", 1)[1].split("\n")[0]
    if command and command[0] in ("run", "config", "evaluate", "rewrite-eval"):
        assert "KEY=VALUE" in text


def test_config_with_overrides():
    result = runner.invoke(app, ["config", "demo", "--set", "distill.lr=0.001", "--set", "teacher.systems=[\"human\"]",
                                        "--set", "distill.learn_from=human"])
    cfg = json.loads(result.output)
    assert cfg["distill"]["lr"] == 0.001 and cfg["teacher"]["systems"] == ["human"]


@pytest.mark.parametrize("override, message", [
    ("distill.lrr=1", "unknown field 'lrr'"),
    ("nothing", "expected key=value"),
    ("distill.epochs=many", "invalid --set override"),
    ("rewrite.dtype=float99", "rewrite.dtype: Input should be 'float32', 'bfloat16', 'float16' or 'auto'"),
    ("distill.device=cdua", "device 'cdua' is not auto, cpu, cuda, cuda:N, mps, xpu or xpu:N"),
])
def test_bad_overrides_are_clear(override, message):
    with pytest.raises(DiscoError, match=message):
        apply_overrides(preset("demo"), [override])
    result = runner.invoke(app, ["config", "demo", "--set", override])
    assert result.exit_code == 2 and message in result.output


def test_unknown_preset_and_stage(tmp_path):
    result = runner.invoke(app, ["run", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown preset 'nope'" in result.output


def test_zero_shot_config(tmp_path):
    cfg = load("mtrag-un", str(tmp_path), ["eval_data.options={\"collections\": [\"fiqa\"]}"], str(tmp_path))
    assert cfg.data.split.test_fraction == 0.0
    target = cfg.eval_config()
    assert target.data.options == {"collections": ["fiqa"]} and target.data.split.test_fraction == 1.0
    assert target.eval_data is None and target.distill == cfg.distill


def test_paper_preset_has_the_papers_training_values_and_demo_the_small_machine_ones():
    paper, demo = preset("paper"), preset("demo")
    d = paper.distill
    assert (d.lr, d.warmup_ratio, d.weight_decay, d.batch_size, d.epochs, d.seed) == (2e-5, 0.01, 0.0, 10, 5, 123)
    assert (d.n_negatives, d.negative_window, d.main_weight, d.contrastive_weight) == (16, (11, 960), 0.99, 0.01)
    assert (d.precision, d.lambda_q, paper.encoder.query_max_length) == ("fp16", 0.0, 256)
    assert d.positive_score == "rank11"
    assert paper.encoder.model == "naver/splade-cocondenser-ensembledistil" and paper.rewrite.backend == "vllm"
    assert paper.distill.learn_from == "fused" and paper.teacher.fusion == "mean_score"
    assert (demo.distill.precision, demo.encoder.model, demo.rewrite.backend) == ("fp32", "splade-tiny", "transformers")


def test_pooled_training_data_and_presets_carry_the_dev_choices(tmp_path):
    from stages.config import data_spec, load
    from core.paths import DEMO_DATA

    cfg = load("demo", ["data/demo", f"mtrag-un:{tmp_path}"])
    assert [(d.format, d.path) for d in cfg.training_data()] == [("disco", str(DEMO_DATA.resolve())),
                                                                 ("mtrag-un", str(tmp_path))]
    extra = cfg.training_data()[1]
    # every extra turn trains; with distill.dev_datasets=all each extra dataset keeps data's dev fraction
    assert extra.split.test_fraction == 0.0 and extra.split.dev_fraction == 0.0
    pooled = load("demo", ["data/demo", f"mtrag-un:{tmp_path}"], ["distill.dev_datasets=all"])
    assert pooled.training_data()[1].split.dev_fraction == 0.2
    # an extra dataset computes only the teacher runs the student learns from
    assert cfg.extra_config(extra).teacher.systems == ["llm"] and cfg.extra_config(extra).extra_data == []
    assert data_spec("some/folder", "qrecc").format == "qrecc"
    with pytest.raises(DiscoError, match=r"--data nope:/x: unknown dataset format 'nope'; known: canard, disco, "):
        data_spec("nope:/x", "disco")
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert data_spec(str(odd), "qrecc").path == str(odd)  # an existing folder with ':' in its name is a folder
    demo, mtrag = preset("demo"), load("mtrag-un", "../shared/data/mtrag")
    assert demo.data.split.dev_fraction == 0.2 and demo.distill.input.answers is False
    assert demo.distill.steps == 200 and demo.distill.negative_window == "auto"
    assert mtrag.distill.learn_from == "answer" and [d.format for d in mtrag.training_data()] == ["mtrag-un", "disco"]
    assert load("mtrag-un", "../shared/data/mtrag", ["extra_data=[]"]).training_data()[1:] == []
    zero_shot = load("mtrag-un", "../shared/data/mtrag", eval_data="../shared/data/mtrag")
    assert zero_shot.data.split.test_fraction == 0.0 and zero_shot.data.split.dev_fraction == 0.2
    with pytest.raises(Exception, match="distill.learn_from"):
        load("demo", None, ["distill.learn_from=nobody"])
    # a pooled dataset may name its own teacher; `data` and `eval_data` learn from distill.learn_from
    own = load("demo", ["data/demo", f"canard:{tmp_path}"], ['extra_data=[{"format": "canard", "path": "%s", '
                                                            '"learn_from": "answer"}]' % tmp_path])
    assert own.source_teachers == ["llm", "answer"] and own.extra_config(own.extra_data[0]).teacher.systems == ["answer"]
    for bad in ('data.learn_from="answer"', 'extra_data=[{"learn_from": "a b"}]'):
        with pytest.raises(Exception, match=r"data(\[0\])?\.learn_from"):
            load("demo", None, [bad])


def test_model_names_are_checked_before_anything_runs(tmp_path):
    demo = preset("demo")
    # the demo's LLM is the rewriter stage's model, made from rewriter.base
    assert demo.models() == {"encoder.model": "splade-tiny", "rewriter.base": "smollm2-135m-instruct"}
    human_only = apply_overrides(demo, ['teacher.systems=["human"]', "distill.learn_from=human"])
    assert human_only.models() == {"encoder.model": "splade-tiny"}  # no LLM teacher: the LLM is never loaded
    pooled = load("demo", ["data/demo", f"canard:{tmp_path}"], ['teacher.systems=["human"]', "distill.learn_from=human"])
    assert "rewriter.base" not in pooled.models()
    pooled = pooled.model_copy(update={"extra_data": [pooled.extra_data[0].model_copy(update={"learn_from": "llm"})]})
    assert "rewriter.base" in pooled.models()  # the extra dataset's own teacher is the LLM
    human_only.check_models()  # packaged weights resolve

    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "demo", "--out", str(out), "--set", "encoder.model=./no-such-model"])
    assert result.exit_code == 2
    assert "encoder.model: model folder ./no-such-model does not exist" in result.output
    assert not (out / "stages").exists()  # refused before the first stage
    result = runner.invoke(app, ["run", "demo", "--out", str(out), "--set", f"rewrite.model={tmp_path}"])
    assert result.exit_code == 2 and f"rewrite.model: model folder {tmp_path}: no config.json there" in result.output
    result = runner.invoke(app, ["run", "demo", "--out", str(out), "--set", f"rewriter.base={tmp_path}"])
    assert result.exit_code == 2 and f"rewriter.base: model folder {tmp_path}: no config.json there" in result.output
