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


def test_cache_key_is_the_output_folder_name():
    key = StageKey().compute_key(None, {"stage": "index", "key": "0123abcd", "fields": {}, "upstream": {}}, {})
    assert key == "index-0123abcd"  # == Path(manifest.dir).name for the folder the task writes
