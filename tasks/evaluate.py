"""Evaluate task: the student and the baselines on held-out turns, effectiveness and efficiency.

Systems: ``last_turn`` (frozen encoder on the current utterance), ``conversation`` (frozen encoder on the whole
conversation, formatted like the student's input), ``rewrite:<teacher>`` (frozen encoder on each teacher's
rewrite: the teacher runs), and ``disco`` (the student on the conversation).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from prefect import task

from disco import evaluation as ev
from disco.config import EvalConfig
from disco.errors import DiscoError
from disco.index.retrieve import retrieve
from disco.index.search import ImpactSearcher
from disco.io import Manifest, atomic_path, write_json, write_text
from disco.report import image_markdown, markdown_report, markdown_table, metrics_plot, results_rows
from disco.runs import write_trec
from models.conversation import StudentInput, format_conversation
from models.splade import SpladeConfig, SpladeEncoder, quantise_sparse
from models.student import StudentCard
from tasks.common import StageCache, link_artifacts, manifest, markdown_artifact, stage_dir, table_artifact

SIGNIFICANCE = ("RR@10", "R@100")  # measures tested for disco against every other system


@task(name="evaluate", cache_policy=StageCache(stage="evaluate"), persist_result=True, result_serializer="json")
def evaluate_task(out: str, encoder: SpladeConfig, evaluate: EvalConfig, data: Manifest, index: Manifest,
                  teachers: Manifest, student: Manifest) -> Manifest:
    key, final = stage_dir("evaluate", out, {"encoder": encoder, "evaluate": evaluate, "data": data,
                                             "index": index, "teachers": teachers, "student": student})
    turns = pl.read_parquet(data["turns"]).filter(pl.col("split") == evaluate.split)
    qrels = pl.read_parquet(data["qrels"]).filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    turns = turns.filter(pl.col("turn_id").is_in(qrels["turn_id"].implode()))
    if turns.is_empty():
        raise DiscoError(f"evaluate: no judged turns in split {evaluate.split!r}")
    card = StudentCard.load(student["student"])  # how the student reads a conversation, as trained
    question = dict(zip(turns["turn_id"], turns["question"]))
    conversation = {t["turn_id"]: format_conversation(t["question"], t["history"]) for t in turns.to_dicts()}
    student_text = {t["turn_id"]: card.text(t["question"], t["history"]) for t in turns.to_dicts()}
    frozen = SpladeEncoder(encoder.model, frozen=True)
    trained = SpladeEncoder(student["student"], frozen=True)
    searcher = ImpactSearcher(index["lucene"])
    runs: dict[str, pl.DataFrame] = {}
    efficiency: dict[str, dict] = {}
    doc_terms = _doc_terms(index["doc_vectors"], encoder.quant_scale)
    # last_turn and conversation (the paper's format) are the untrained baselines; when the student reads
    # another format, the frozen encoder on that same text is a baseline too (what the student started from)
    systems_in = [("last_turn", frozen, question, encoder.query_max_length, "right"),
                  ("conversation", frozen, conversation, encoder.query_max_length, "right")]
    if card.input != StudentInput():
        systems_in.append(("conversation:student-input", frozen, student_text, card.max_length,
                           card.input.truncation_side()))
    systems_in.append(("disco", trained, student_text, card.max_length, card.input.truncation_side()))
    for name, enc, texts, max_length, side in systems_in:
        got = retrieve(enc, searcher, texts, system=name, k=evaluate.k, max_length=max_length,
                       batch_size=encoder.batch_size, scale=card.quant_scale if name == "disco" else
                       encoder.quant_scale, truncation_side=side)
        runs[name] = got.run
        efficiency[name] = {
            "query_terms": float(np.mean([len(t) for t in got.query_terms])),
            "flops": ev.flops(got.query_terms, doc_terms, frozen.vocab_size),
            "latency_ms": _latency_ms(enc, searcher, texts, evaluate, encoder, max_length, side),
        }
    teacher_runs = pl.read_parquet(teachers["runs"]).filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    for name in sorted(set(teacher_runs["system"]) - {"fused"}):
        runs[f"rewrite:{name}"] = teacher_runs.filter(pl.col("system") == name)
    searcher.close()

    turn_of = dict(zip(turns["turn_id"], turns["turn"]))
    systems, depth, per_q = {}, {}, {}
    for name, run in runs.items():
        per_q[name] = ev.per_query(run, qrels, evaluate.rel_threshold)
        systems[name] = ev.aggregate(per_q[name])
        depth[name] = ev.by_depth(per_q[name], turn_of)
    order = ["last_turn", *sorted(n for n in runs if n.startswith("conversation")),
             *sorted(n for n in runs if n.startswith("rewrite:")), "disco"]
    metrics = {
        "dataset": data.stats.get("format"), "split": evaluate.split, "turns": len(turns),
        "rel_threshold": evaluate.rel_threshold, "doc_terms_mean": index.stats.get("doc_terms_mean", 0.0),
        "systems": {n: systems[n] for n in order}, "by_depth": {n: depth[n] for n in order},
        "efficiency": efficiency,
        "significance": {n: {m: ev.paired_test(per_q["disco"], per_q[n], m) for m in SIGNIFICANCE}
                         for n in order if n != "disco"},
    }
    with atomic_path(final) as tmp:
        (tmp / "runs").mkdir(parents=True)
        for name, run in runs.items():
            write_trec(run, tmp / "runs" / f"{name.replace(':', '-')}.trec", name)
        write_json(tmp / "metrics.json", metrics)
        png = metrics_plot(metrics, tmp / "metrics.png")
        write_text(tmp / "report.md", markdown_report(metrics, "metrics.png"))
    m = manifest("evaluate", key, final, {"metrics": ("metrics.json", None), "report": ("report.md", None),
                                          "plot": ("metrics.png", None), "runs": ("runs", len(runs))},
                 {"systems": systems})
    table_artifact("evaluate-metrics", results_rows(metrics), f"{len(turns)} held-out turns")
    markdown_artifact("evaluate-report", markdown_table(results_rows(metrics)) + "\n\n" +
                      image_markdown(png, "metrics"), "metrics table and plot")
    link_artifacts("evaluate", m)
    return m


def publish(report: Manifest, out: str) -> None:
    """Copy the report files to the run folder's top level (atomically), also after a cache hit."""
    for name, target in (("metrics", "metrics.json"), ("report", "report.md"), ("plot", "metrics.png")):
        with atomic_path(Path(out) / target) as tmp:
            shutil.copy2(report[name], tmp)


def _doc_terms(path, scale: int, limit: int = 20_000) -> list[np.ndarray]:
    """Quantised non-zero term ids of (up to ``limit``) passages, for FLOPS."""
    table = pq.ParquetFile(path).read_row_groups([0]).slice(0, limit)
    return [quantise_sparse(np.asarray(t), np.asarray(w), scale)[0]
            for t, w in zip(table.column("term_ids").to_pylist(), table.column("weights").to_pylist())]


def _latency_ms(enc: SpladeEncoder, searcher: ImpactSearcher, texts: dict[str, str], evaluate: EvalConfig,
                encoder: SpladeConfig) -> float:
    """Median time to encode and search one query at a time (batch size 1, one search thread)."""
    times = []
    for qid in list(texts)[: evaluate.latency_queries]:
        t0 = time.perf_counter()
        retrieve(enc, searcher, {qid: texts[qid]}, system="latency", k=evaluate.k,
                 max_length=encoder.query_max_length, batch_size=1, scale=encoder.quant_scale)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times) if times else float("nan")
