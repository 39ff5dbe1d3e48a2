"""prefect.yaml declares the pipeline (scheduled) and one deployment per declared stage, each a real flow."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect import Flow

from stages.graph import NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_deployments_are_the_declared_stages_and_point_at_flows():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"pipeline", "continuous", *NAMES}
    assert deployments["pipeline"]["schedules"][0]["cron"]
    assert deployments["pipeline"]["entrypoint"] == "flows/stage_flows.py:pipeline_flow"
    for name in NAMES:
        assert deployments[name]["entrypoint"] == f"flows/stage_flows.py:{name}_flow"
    for d in deployments.values():
        path, name = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow), d["entrypoint"]
        if d["name"] != "pipeline":
            assert flow.name == d["name"]


def test_continuous_deployment_is_scheduled_with_a_data_folder_and_a_valid_gate():
    from retrieval.gate import GateConfig

    spec = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    d = spec["continuous"]
    assert d["entrypoint"] == "flows/continuous.py:continuous_flow" and d["schedules"][0]["cron"]
    assert {"data", "gate", "registry", "out"} <= set(d["parameters"])
    gate = GateConfig.model_validate(d["parameters"]["gate"])
    assert (gate.measure, gate.alpha, gate.guard) == ("RR@10", 0.1, "R@100")
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        GateConfig.model_validate({**d["parameters"]["gate"], "alpah": 0.05})
    with pytest.raises(ValidationError, match="gate.measure 'MRR'"):
        GateConfig(measure="MRR")
