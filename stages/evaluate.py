"""Stage 6, evaluate: the student and the baselines on held-out turns: RR@10, nDCG@3, R@10, R@100, efficiency
(the systems and measures are :mod:`retrieval.systems`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from core.io import Manifest, atomic_path, write_json, write_text
from models.splade_config import SpladeConfig
from retrieval.plots import data_uri, metrics_plot
from retrieval.report import markdown_report, results_rows
from retrieval.index.sparse import Backend
from stages.base import Artifact, Stage


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = 1000
    rel_threshold: int = Field(1, description="grade at or above which a passage counts as relevant")
    split: str = "test"
    latency_queries: int = 50
    searcher: Backend = Field("auto", description="auto: the exact sparse-matrix searcher for corpora it is faster "
                                                  "on and fits in memory, else Lucene (retrieval/index/sparse.py: "
                                                  "choose_backend); sparse or lucene: that one (same runs)")


def run(out: Path, work: Path, progress, encoder: SpladeConfig, evaluate: EvalConfig, ingest: Manifest,
        index: Manifest, teacher: Manifest, distill: Manifest) -> dict:
    """``metrics.json``, ``report.md``, ``metrics.png`` and each system's TREC run under ``runs/``."""
    # imported here, not at the top: a cached run reads this module for the config and the key, and must not
    # pay for torch and transformers (tests/disco/test_cached_run.py)
    from retrieval.systems import evaluate_systems, held_out, summarize

    turns, qrels = held_out(ingest["turns"], ingest["qrels"], evaluate.split)
    (out / "runs").mkdir()  # each system's TREC run, written chunk by chunk as it is retrieved and measured
    per_q, efficiency = evaluate_systems(turns, qrels, encoder, distill["student"], index["lucene"],
                                         index["doc_vectors"], teacher["runs"], evaluate.k, evaluate.latency_queries,
                                         evaluate.rel_threshold, out / "runs", evaluate.searcher)
    measured = summarize(per_q, turns)
    result = {
        "dataset": ingest.stats.get("format"), "split": evaluate.split, "turns": len(turns),
        "rel_threshold": evaluate.rel_threshold, "doc_terms_mean": index.stats.get("doc_terms_mean", 0.0),
        "systems": measured["systems"], "by_depth": measured["by_depth"], "efficiency": efficiency,
        "significance": measured["significance"],
    }
    write_json(out / "metrics.json", result)
    metrics_plot(result, out / "metrics.png")
    write_text(out / "report.md", markdown_report(result, "metrics.png"))
    return {"systems": result["systems"], "runs": len(per_q)}


def artifacts(m: Manifest) -> list[Artifact]:
    """The metrics table, and the whole report as report.md has it (RR@10 by turn depth, the paired tests of
    disco against each system) with its plot inside."""
    import json

    result = json.loads(m["metrics"].read_text())
    return [Artifact("table", "evaluate-metrics", results_rows(result), f"{result['turns']} held-out turns"),
            Artifact("markdown", "evaluate-report", markdown_report(result, data_uri(m["plot"].read_bytes())),
                     "the report: metrics, RR@10 by turn depth, disco vs each system, plot")]


def publish(report: Manifest, out: str | Path) -> None:
    """Copy the report files to the run folder's top level (atomically), also after a cache hit."""
    for name, target in (("metrics", "metrics.json"), ("report", "report.md"), ("plot", "metrics.png")):
        with atomic_path(Path(out) / target) as tmp:
            shutil.copy2(report[name], tmp)


STAGE = Stage(
    name="evaluate",
    summary="student vs. last turn, full conversation and each rewrite teacher: RR@10, nDCG@3, R@10, R@100, "
            "efficiency",
    upstream=("ingest", "index", "teacher", "distill"),
    reads=("encoder", "evaluate"),
    outputs={"metrics": "metrics.json", "report": "report.md", "plot": "metrics.png", "runs": "runs"},
    rows={"runs": "runs"},
    run=run,
    scope="evaluation",
    artifacts=artifacts,
)
