"""The Prefect tasks of continuous distillation (flows/continuous.py): the gate, and the registry record with the
promotion. The numbers come from retrieval/gate.py; the registry is core/registry.py (MLflow)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.io import Manifest, write_json
from core.registry import Registry, flat
from retrieval.gate import GateConfig
from stages.config import PipelineConfig
from tasks.artifacts import try_

ALIAS = "production"


@task(name="gate", cache_policy=NO_CACHE,
      description="the new student against the serving one on the fixed evaluation turns")
def gate_task(done: dict[str, Manifest], gate: GateConfig, registry_name: str, registry_uri: str | None, out: str,
              rel_threshold: int, k: int) -> dict:
    """The decision (retrieval.gate.decide) with the serving version's label; its table as Prefect artifacts."""
    from retrieval.gate import decide, evaluation_turns, student_per_query

    registry = Registry(registry_name, registry_uri)
    serving = registry.get(alias=ALIAS)
    turns, qrels = evaluation_turns(done["ingest"], gate.split)
    lucene = done["index"]["lucene"]
    candidate = student_per_query(done["distill"]["student"], turns, qrels, lucene, k, rel_threshold)
    incumbent = None
    if serving is not None:
        folder = registry.download(serving, Path(out) / "registry")
        incumbent = student_per_query(folder, turns, qrels, lucene, k, rel_threshold)
    decision = decide(candidate, incumbent, gate)
    decision["serving"] = serving.label if serving else None
    decision["gate"] = gate.model_dump()
    _publish(decision)
    return decision


def _publish(decision: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    verdict = "**promoted**" if decision["promote"] else "**kept out** (recorded, not promoted)"
    lines = [f"# Gate: {verdict}", "", decision["reason"], "",
             f"Serving student: {decision['serving'] or 'none'}; {decision['turns']} evaluation turns; gate "
             f"{json.dumps(decision['gate'])}", "", "| measure | candidate | serving | diff | p | 95% CI | w/t/l |",
             "|---|---|---|---|---|---|---|"]
    for r in decision["table"]:
        lines.append(f"| {r['measure']} | {r['candidate']} | {r['serving']} | {r['diff']} | {r['p']} | "
                     f"{r['ci95']} | {r['wins/ties/losses']} |")
    rows = [{**r, "ci95": str(r["ci95"]), "decision": "promote" if decision["promote"] else "keep out"}
            for r in decision["table"]]
    try_(lambda: create_table_artifact(rows, key="continuous-gate",
                                       description=f"gate: {decision['reason']}"))
    try_(lambda: create_markdown_artifact("\n".join(lines), key="continuous-decision",
                                          description="the gate's decision and its table"))


@task(name="register", cache_policy=NO_CACHE,
      description="record the student with its lineage in MLflow; promote it if the gate says so")
def register_task(config: PipelineConfig, done: dict[str, Manifest], decision: dict, registry_name: str,
                  registry_uri: str | None, out: str, started: float = 0.0) -> dict:
    """One MLflow run + model version per trained student, its lineage as parameters, tags, metrics and artifacts;
    the alias ``production`` moves to it when ``decision["promote"]``."""
    registry = Registry(registry_name, registry_uri)
    metrics = {}
    ev = done["evaluate"].stats.get("systems", {})
    for system, measures in ev.items():
        for m, v in measures.items():
            metrics[f"test.{system.replace(':', '.')}.{m}"] = v
    for k, v in done["distill"].stats.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[f"distill.{k}"] = v
    for r in decision["table"]:
        metrics[f"gate.candidate.{r['measure']}"] = r["candidate"]
        if r["serving"] is not None:
            metrics[f"gate.serving.{r['measure']}"] = r["serving"]
            metrics[f"gate.p.{r['measure']}"] = r["p"]
    dev = _dev_metrics(done["distill"])
    metrics.update({f"dev.{k}": v for k, v in dev.items()})
    reuse = reuse_counts(done, started)
    tags = {
        "run_dir": str(Path(out).resolve()),
        "data.path": config.data.path,
        "data.turns_sha256": done["ingest"].outputs["turns"].sha256,
        "data.corpus_sha256": done["ingest"].outputs["corpus"].sha256,
        "data.turns": done["ingest"].outputs["turns"].rows,
        "stage_keys": json.dumps({name: m.key for name, m in done.items()}),
        "index": str(done["index"]["lucene"]),
        "corpus": str(done["ingest"]["corpus"]),
        "reuse": json.dumps(reuse),
        "gate.decision": "promoted" if decision["promote"] else "kept out",
        "gate.reason": decision["reason"],
        "gate.serving": decision["serving"] or "none",
        "description": f"{config.name} on {config.data.path}: {decision['reason']}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        write_json(Path(tmp) / "config.json", config.model_dump(mode="json"))
        write_json(Path(tmp) / "gate.json", decision)
        write_json(Path(tmp) / "manifests.json", {n: m.model_dump(mode="json") for n, m in done.items()})
        artifacts = {"lineage": tmp, "evaluate": done["evaluate"]["metrics"],
                     "report": done["evaluate"]["report"], "distill": done["distill"]["dev"]}
        version = registry.record(done["distill"]["student"], params=flat(config.model_dump(mode="json")),
                                  tags=tags, metrics=metrics, artifacts=artifacts,
                                  run_name=f"{config.name}-{done['distill'].key}")
    if decision["promote"]:
        registry.promote(version, ALIAS)
    what = f"promoted to @{ALIAS}" if decision["promote"] else "recorded, not promoted"
    print(f"registry {registry.uri}: {version.label} {what} ({decision['reason']})")
    return {"version": version.version, "name": version.name, "promoted": decision["promote"],
            "serving_before": decision["serving"], "run_id": version.run_id}


def reuse_counts(done: dict[str, Manifest], started: float) -> dict[str, dict]:
    """The turns each per-turn stage computed and reused in the run that began at ``started`` (a Unix time): its
    manifest's counts when this run wrote the stage, and all turns reused when the stage came from an earlier run
    (its manifest is older than the run)."""
    out = {}
    for name, m in done.items():
        if "computed_turns" not in m.stats:
            continue
        fresh = (Path(m.dir) / "manifest.json").stat().st_mtime >= started
        total = m.stats["computed_turns"] + m.stats["reused_turns"]
        out[name] = ({"computed_turns": m.stats["computed_turns"], "reused_turns": m.stats["reused_turns"]} if fresh
                     else {"computed_turns": 0, "reused_turns": total, "stage_reused": True})
    return out


def _dev_metrics(distill: Manifest) -> dict[str, float]:
    """The dev measures of the epoch the student kept (distill's dev.parquet), when there are some."""
    import polars as pl

    try:
        dev = pl.read_parquet(distill["dev"])
    except Exception:  # noqa: BLE001 - a student without dev turns has no dev table
        return {}
    if dev.is_empty() or "epoch" not in dev.columns:
        return {}
    best = distill.stats.get("best_epoch")
    row = dev.filter(pl.col("epoch") == best) if best is not None else dev.tail(1)
    row = row if not row.is_empty() else dev.tail(1)
    return {k: float(v) for k, v in row.to_dicts()[0].items() if isinstance(v, (int, float)) and k != "epoch"}
