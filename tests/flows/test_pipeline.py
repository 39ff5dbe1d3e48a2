"""The whole pipeline on a slice of the demo, inside a real Prefect API, with real models and a real index.

Asserts the outputs and their consistency, that an unchanged rerun is served from cache, and that changing one
stage's config reruns that stage and what follows only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from stages.config import apply_overrides, preset
from stages.graph import NAMES as STAGES
from stages.runner import run_pipeline

pytestmark = pytest.mark.slow

def _config(data: Path, *extra: str):
    return apply_overrides(preset("demo"), [
        f"data.path={data}", "data.split.test_fraction=0.25", "rewrite.max_new_tokens=12", "rewrite.batch_size=16",
        "distill.epochs=2", "distill.steps=null", 'teacher.systems=["human", "llm"]', "distill.n_negatives=4",
        "distill.negative_window=[2, 100]", "evaluate.latency_queries=3",
        *extra,
    ])


def _task_states(expected_runs: int) -> dict[str, str]:
    """Final state names of the newest run of each stage task, read from the Prefect API.

    Task run states reach the API through events, asynchronously: wait until ``expected_runs`` task runs
    have finished there.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
            finished = [r for r in runs if r.state_type is not None and r.state_type.value == "COMPLETED"]
            if len(finished) >= expected_runs or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    states: dict[str, str] = {}
    for r in finished:  # newest first
        states.setdefault(r.name.rsplit("-", 1)[0], r.state_name)
    return states


def test_pipeline_runs_caches_and_reruns_one_stage(prefect_api, demo_slice, tmp_path):
    from flows.pipeline import pipeline

    out = str(tmp_path / "run")
    cfg = _config(demo_slice)
    done = pipeline(cfg, out)

    metrics = json.loads((Path(out) / "metrics.json").read_text())
    systems = metrics["systems"]
    # the demo preset's student reads the user's turns only: the untrained encoder on that text is a baseline too
    assert set(systems) == {"last_turn", "conversation", "conversation:student-input", "rewrite:human",
                            "rewrite:llm", "rewrite:fused", "disco"}
    for name, values in systems.items():
        assert set(values) >= {"RR@10", "nDCG@3", "R@10", "R@100"}
        assert all(0.0 <= v <= 1.0 for v in values.values()), name
    # The human rewrites are a strong teacher on this data: they must beat the ambiguous last utterance.
    assert systems["rewrite:human"]["RR@10"] > systems["last_turn"]["RR@10"]

    turns = pl.read_parquet(done["ingest"]["turns"])
    rewrites = pl.read_parquet(done["rewrite"]["rewrites"])
    assert set(rewrites["teacher"]) == {"human", "llm"}
    assert rewrites.filter(pl.col("teacher") == "llm").height == turns.height
    runs = pl.read_parquet(done["teacher"]["runs"])
    assert set(runs["system"]) == {"human", "llm", "fused"}
    corpus_ids = set(pl.read_parquet(done["ingest"]["corpus"])["doc_id"])
    assert set(runs["doc_id"]) <= corpus_ids
    student = Path(done["distill"]["student"])
    assert (student / "model.safetensors").exists() and (student / "tokenizer.json").exists()
    assert json.loads((student / "disco_student.json").read_text())["input"]["answers"] is False
    dev = pl.read_parquet(done["distill"]["dev"])  # the dev split chose the epoch: 0 (untrained), 1, 2
    assert dev["epoch"].to_list() == [0, 1, 2] and done["distill"].stats["best_epoch"] in (0, 1, 2)
    trec = Path(done["evaluate"]["runs"]) / "disco.trec"
    assert trec.read_text().split("\n", 1)[0].split()[1] == "Q0"
    n_test = turns.filter(pl.col("split") == "test").height
    assert metrics["turns"] == n_test

    # Unchanged rerun: every stage is served from cache.
    pipeline(cfg, out)
    assert _task_states(2 * len(STAGES)) == dict.fromkeys(STAGES, "Cached")
    # The Prefect cache key is the output folder's key, and the same plan run without Prefect finds every
    # stage's folder finished: the same manifests, nothing recomputed.
    for m in done.values():
        assert (Path(out) / "cache" / f"{m.stage}-{m.key}").exists() and Path(m.dir).name == f"{m.stage}-{m.key}"
    plain = run_pipeline(cfg, out)
    assert {k: v.model_dump() for k, v in plain.items()} == {k: v.model_dump() for k, v in done.items()}

    # Changing the distillation config reruns distill and evaluate only.
    pipeline(_config(demo_slice, "distill.epochs=1"), out)
    assert _task_states(3 * len(STAGES)) == {"ingest": "Cached", "rewriter": "Cached", "rewrite": "Cached",
                                             "index": "Cached", "teacher": "Cached",
                      "distill": "Completed", "evaluate": "Completed"}
