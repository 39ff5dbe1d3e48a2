"""Continuous distillation (prefect.yaml's ``continuous`` deployment, on a schedule): a dataset folder that keeps
growing is retrained on, with little work, checked against the student in service, and promoted only if better.

1. The pipeline on the folder (a subflow, as ``disco run``): ingest reads every file; the index is reused while
   the corpus is unchanged (its key follows the corpus only); the rewrite and teacher stages compute their new
   turns only (LLM rewrites and teacher runs of earlier runs are reused by content, retrieval/turn_cache.py; the
   stages' stats count ``computed_turns`` and ``reused_turns``); the student retrains and is evaluated.
   Conversations keep their split as the folder grows (``data.split.method=hash``, set first; overrides win).
2. The gate (tasks/continuous.py, retrieval/gate.py): the new student and the one the registry's ``production``
   alias names search the same fixed evaluation turns; a paired test decides (``gate``: GateConfig). The
   decision and its table are Prefect artifacts (``continuous-gate``, ``continuous-decision``).
3. The registry (core/registry.py, MLflow): the student is recorded with its lineage; the alias moves to it only
   when the gate says so. ``disco serve registry:NAME@production`` follows the alias.
"""

from __future__ import annotations

import time

from prefect import flow

# imported here, when the worker loads the entrypoint, not inside the flow: Python 3.11's AST constructor is not
# safe against two threads parsing at once (CPython gh-106905), and the engine's threads run beside the flow
# function (a flow run once failed with "AST constructor recursion depth mismatch" importing these inside it)
from flows.pipeline import run as run_pipeline
from flows.stage_flows import resolve
from retrieval.gate import GateConfig
from tasks.continuous import gate_task, register_task, reuse_counts


@flow(name="continuous", log_prints=True,
      description="Retrain on a growing dataset folder (new turns only), gate against the serving student, record in "
                  "MLflow and promote when better.")
def continuous_flow(data: str = "data/demo", preset: str = "demo", overrides: list[str] | None = None,
                    out: str = "runs/continuous", gate: GateConfig = GateConfig(), registry: str = "disco-demo",
                    registry_uri: str | None = None) -> dict:
    """``data``: the growing dataset folder (``FORMAT:PATH`` allowed); ``overrides``: ``key=value`` as ``--set``;
    ``registry``: the registered model's name; ``registry_uri``: the MLflow server (default
    ``MLFLOW_TRACKING_URI``)."""
    cfg = resolve(preset, [data], None, ["data.split.method=hash", *(overrides or [])])
    print(f"continuous: {data} -> {out} (registry {registry}, gate {gate.model_dump()})")
    started = time.time()
    done = run_pipeline(cfg, out)
    reuse = reuse_counts(done, started)
    print(f"turns computed / reused: {reuse}")
    decision = gate_task(done, gate, registry, registry_uri, out, cfg.evaluate.rel_threshold, cfg.evaluate.k)
    print(f"gate: {decision['reason']}")
    result = register_task(cfg, done, decision, registry, registry_uri, out, started)
    return {**result, "reason": decision["reason"], "reuse": reuse,
            "stage_keys": {name: m.key for name, m in done.items()}}
