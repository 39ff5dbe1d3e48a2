"""The command line: help everywhere, configs, and clear errors instead of tracebacks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from disco.cli import app
from disco.config import apply_overrides, load, preset
from disco.errors import DiscoError

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["run"], ["config"], ["presets"], ["ui"], ["evaluate"]])
def test_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_config_with_overrides():
    result = runner.invoke(app, ["config", "demo", "--set", "distill.lr=0.001", "--set", "teacher.teachers=[\"human\"]"])
    cfg = json.loads(result.output)
    assert cfg["distill"]["lr"] == 0.001 and cfg["teacher"]["teachers"] == ["human"]


@pytest.mark.parametrize("override, message", [
    ("distill.lrr=1", "unknown field 'lrr'"),
    ("nothing", "expected key=value"),
    ("distill.epochs=many", "invalid --set override"),
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
    target = cfg.target()
    assert target.data.options == {"collections": ["fiqa"]} and target.data.split.test_fraction == 1.0
    assert target.eval_data is None and target.distill == cfg.distill
