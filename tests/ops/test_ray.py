"""``runner.kind=ray`` (``disco run --runner ray``) on a local 2-worker Ray cluster through prefect-ray's
RayTaskRunner: corpus encoding and teacher retrieval run shard by shard as Prefect tasks on the cluster, and the
outputs equal those of the single-process run of the same configuration (the ``pipeline`` deployment's run in
conftest.py): the same stage keys up to the index, document vectors, Lucene collection, teacher runs and
metrics.

Marked slow: every stage is recomputed in a new folder and each Ray worker imports torch and Pyserini (on this
shared 2-core machine under heavy load the same run took 50 minutes; `make test` runs it). Skipped without
prefect-ray (pip: .[ray]).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import os

# Not in the default suite: on 2 shared cores the run takes tens of minutes, and run in-process under pytest with a
# Ray driver, the JVM searcher died with a segmentation fault in `batch_search` (2026-12-02; the same steps as a
# plain script gave identical outputs). Run it on demand: DISCO_TEST_RAY=1 pytest tests/ops/test_ray.py
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("DISCO_TEST_RAY") != "1",
                                 reason="on demand only: DISCO_TEST_RAY=1 (tens of minutes on 2 cores; see the module "
                                        "docstring)")]


def _stages(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["stages"]


def _out(stages: dict, stage: str, name: str) -> Path:
    return Path(stages[stage]["outputs"][name]["path"])


def test_ray_runner_gives_the_single_process_outputs(ops, ops_server, deployed_run, demo_slice, tmp_path):
    pytest.importorskip("prefect_ray", reason="prefect-ray is not installed (pip: .[ray])")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import run
    from stages.config import load

    cfg = load("demo", [str(demo_slice)], [*ops.FAST, "runner.kind=ray", "runner.workers=2"])
    out = tmp_path / "ray"
    with temporary_settings({PREFECT_API_URL: ops_server["url"]}):
        run(cfg, str(out))
    single, ray = _stages(deployed_run["out"]), _stages(out)

    # the runner is read by no stage: the same keys up to the index. (Downstream keys differ between any two
    # builds, Ray or not: they hash the index stage's outputs, and a Lucene index's files carry per-build ids.)
    assert {k: ray[k]["key"] for k in ("ingest", "rewrite", "index")} == \
        {k: single[k]["key"] for k in ("ingest", "rewrite", "index")}
    for name in ("doc_vectors", "collection"):
        assert ray["index"]["outputs"][name]["sha256"] == single["index"]["outputs"][name]["sha256"]
    # identical document vectors and impact collection, shard by shard
    assert pq.read_table(_out(ray, "index", "doc_vectors")).equals(pq.read_table(_out(single, "index", "doc_vectors")))
    files = sorted(p.name for p in _out(single, "index", "collection").iterdir())
    assert len(files) >= 3 and files == sorted(p.name for p in _out(ray, "index", "collection").iterdir())
    for f in files:
        assert (_out(ray, "index", "collection") / f).read_bytes() == (_out(single, "index", "collection") / f).read_bytes()
    # identical teacher runs and metrics
    assert pl.read_parquet(_out(ray, "teacher", "runs")).equals(pl.read_parquet(_out(single, "teacher", "runs")))
    systems = json.loads((out / "metrics.json").read_text())["systems"]
    assert systems == json.loads((deployed_run["out"] / "metrics.json").read_text())["systems"]

    # the shards ran as Prefect tasks (on the cluster): one per shard
    with ops.client_for(ops_server) as client:
        names = [t.name for t in client.read_task_runs(limit=500)]
    n_docs = pq.read_metadata(_out(single, "index", "doc_vectors")).num_rows
    assert sum(n.startswith("index-encode-") for n in names) == -(-n_docs // 20)
    assert sum(n.startswith("teacher-retrieve-") for n in names) >= 2
