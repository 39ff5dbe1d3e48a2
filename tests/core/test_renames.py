"""Renamed configuration fields (issue 27, "one name, six meanings"; core/renames.py): an old key written by hand is
one clear error naming the new key, wherever it is written; a run saved before the rename still opens."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from core.errors import DiscoError
from core.renames import RENAMED, migrate_config, renamed_keys
from core.run_record import RunRecord
from disco.cli import app
from models.distill_config import DistillConfig
from models.rewrite.config import RewriteConfig
from stages.config import PRESETS_DIR, PipelineConfig, apply_overrides, load, preset
from stages.teacher import TeacherConfig

OLD = [  # (override with the old key, the message)
    ("distill.kl_weight=0.5", "distill.kl_weight was renamed to distill.main_weight"),
    ("distill.teacher=human", "distill.teacher was renamed to distill.learn_from"),
    ("rewrite.teacher=mistral", "rewrite.teacher was renamed to rewrite.name"),
    ('teacher.teachers=["human"]', "teacher.teachers was renamed to teacher.systems"),
    ("data.teacher=human", "data.teacher was renamed to data.learn_from"),
]


def test_every_rename_is_listed():
    assert {f"{section}.{old}" for section, names in RENAMED.items() for old in names} == {
        o.split("=")[0] for o, _ in OLD}


@pytest.mark.parametrize("override, message", OLD, ids=[o.split("=")[0] for o, _ in OLD])
def test_an_old_key_is_one_error_naming_the_new_one(override, message, tmp_path):
    # --set, as `disco run` / `disco config` and a deployment's `overrides` form field pass it
    with pytest.raises(DiscoError, match=f"^--set '{override}': {message}$".replace("[", r"\[")):
        apply_overrides(preset("demo"), [override])
    result = CliRunner().invoke(app, ["config", "demo", "--set", override])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    # a whole section given at once (--set SECTION={...}) and a preset file
    section, _, rest = override.partition(".")
    field, _, value = rest.partition("=")
    with pytest.raises(DiscoError, match=f"^invalid --set override: {message}$"):
        apply_overrides(preset("demo"), [f"{section}={json.dumps({field: json.loads(value) if value[0] in '[0' else value})}"])
    (tmp_path / "demo.yaml").write_text((PRESETS_DIR / "demo.yaml").read_text())
    (tmp_path / "old.yaml").write_text(f"extends: demo\n{section}:\n  {field}: {value}\n")
    with pytest.raises(DiscoError, match=f"old\\.yaml: {message}$"):
        preset("old", tmp_path)
    # the pipeline flow's `config` form in the Prefect UI: the model itself refuses it, with the same words
    with pytest.raises(ValidationError, match=message):
        PipelineConfig.model_validate({section: {field: json.loads(value) if value[0] in "[0" else value}})


def test_an_old_key_of_a_pooled_dataset_names_its_place():
    with pytest.raises(DiscoError, match=r"extra_data\[0\]\.teacher was renamed to extra_data\[0\]\.learn_from"):
        apply_overrides(preset("demo"), ['extra_data=[{"teacher": "human"}]'])
    with pytest.raises(DiscoError, match=r"distill\.kl_weight was renamed to distill\.main_weight; "
                                         r"teacher\.teachers was renamed to teacher\.systems"):
        apply_overrides(preset("demo"), ['distill={"kl_weight": 1}', 'teacher={"teachers": ["human"]}'])


def _old(config: dict) -> dict:
    """``config`` as a run written before the rename saved it."""
    old = json.loads(json.dumps(config))
    for section in [old["data"], old["eval_data"], *old["extra_data"]]:
        section["teacher"] = section.pop("learn_from")
    old["distill"]["teacher"] = old["distill"].pop("learn_from")
    old["distill"]["kl_weight"] = old["distill"].pop("main_weight")
    old["rewrite"]["teacher"] = old["rewrite"].pop("name")
    old["teacher"]["teachers"] = old["teacher"].pop("systems")
    return old


def test_a_run_saved_before_the_rename_still_opens(tmp_path):
    cfg = load("demo", ["data/demo", f"canard:{tmp_path}"], [
        "distill.main_weight=0.7", "rewrite.name=mistral", 'teacher.systems=["human","mistral"]',
        "distill.learn_from=mistral", f'extra_data=[{{"format": "canard", "path": "{tmp_path}", "learn_from": "human"}}]',
        f'eval_data={{"path": "{tmp_path}"}}'])
    saved = _old(cfg.model_dump(mode="json"))
    assert set(renamed_keys(saved)) == {
        "distill.kl_weight was renamed to distill.main_weight", "distill.teacher was renamed to distill.learn_from",
        "rewrite.teacher was renamed to rewrite.name", "teacher.teachers was renamed to teacher.systems",
        "data.teacher was renamed to data.learn_from", "eval_data.teacher was renamed to eval_data.learn_from",
        "extra_data[0].teacher was renamed to extra_data[0].learn_from"}
    (tmp_path / "run.json").write_text(json.dumps({"config": saved, "stages": {}}))
    # typed (disco evaluate, export and the model card), and as JSON with one section typed (search, serve)
    assert RunRecord[PipelineConfig].read(tmp_path).config == cfg
    plain = RunRecord.read(tmp_path)
    assert plain.config["distill"]["main_weight"] == 0.7 and "kl_weight" not in plain.config["distill"]
    assert plain.section("distill", DistillConfig) == cfg.distill
    assert plain.section("rewrite", RewriteConfig).name == "mistral"
    assert plain.section("teacher", TeacherConfig).systems == ["human", "mistral"]


def test_migration_moves_old_keys_only_and_copies():
    new = PipelineConfig().model_dump(mode="json")
    assert migrate_config(new) is new and migrate_config([1]) == [1]  # nothing renamed: the same object
    old = {"distill": {"kl_weight": 0.5, "main_weight": 0.9, "lr": 1.0}, "teacher": {"teachers": ["human"]},
           "extra_data": [{"teacher": "llm"}, "not a section"], "eval_data": None}
    moved = migrate_config(old)
    assert moved == {"distill": {"main_weight": 0.9, "lr": 1.0}, "teacher": {"systems": ["human"]},  # new one wins
                     "extra_data": [{"learn_from": "llm"}, "not a section"], "eval_data": None}
    assert old["distill"]["kl_weight"] == 0.5 and old["extra_data"][0] == {"teacher": "llm"}  # untouched
