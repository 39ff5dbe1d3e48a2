"""The generic wrapper: one cached Prefect task per declared stage, keyed by the stage key it writes under."""

from __future__ import annotations

from prefect import Task

from stages.graph import STAGES
from tasks.stage import StageKey, stage_task


def test_one_task_per_declaration_with_its_name_retries_and_summary():
    for decl in STAGES:
        t = stage_task(decl.name)
        assert isinstance(t, Task) and t.name == decl.name
        assert t.retries == decl.retries and t.description == decl.summary
        assert isinstance(t.cache_policy, StageKey) and t.result_serializer == "json"


def test_cache_key_is_the_output_folder_name(tmp_path):
    """The Prefect cache key of a step is the name of the folder the stage writes (the ingest of the demo, run as a
    plain function), so a cached result always points at that folder."""
    from pathlib import Path

    from stages.base import read_fields, run_stage, stage_key
    from stages.config import preset
    from stages.graph import BY_NAME

    ingest = BY_NAME["ingest"]
    fields = read_fields(ingest, preset("demo"))
    key = stage_key(ingest, fields, {})
    m = run_stage(ingest, fields, {}, tmp_path, key=key)
    inputs = {"stage": "ingest", "key": key, "fields": fields, "upstream": {}, "out": str(tmp_path)}
    assert StageKey().compute_key(None, inputs, {}) == Path(m.dir).name == f"ingest-{m.key}"
    assert Path(m.dir).parent == tmp_path.resolve() / "stages" and (Path(m.dir) / "manifest.json").is_file()


