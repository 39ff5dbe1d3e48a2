"""prefect.yaml declares the pipeline (scheduled) and one deployment per stage, each pointing at a real flow."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]


def test_deployments_point_at_flows():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"pipeline", "ingest", "rewrite", "index", "teacher", "distill", "evaluate"}
    assert deployments["pipeline"]["schedules"][0]["cron"]
    for d in deployments.values():
        path, name = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow), d["entrypoint"]
