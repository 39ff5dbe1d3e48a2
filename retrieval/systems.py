"""The systems compared at evaluation, their effectiveness and their efficiency.

Systems (Lupart et al., SIGIR 2025, sec. 4-5): ``last_turn`` (frozen encoder on the current utterance),
``conversation`` (frozen encoder on the whole conversation in the paper's format; plus
``conversation:student-input`` when the student reads another format),
``rewrite:<teacher>`` (frozen encoder on each teacher's rewrite: the teacher runs), and ``disco`` (the student on
the conversation). Efficiency: mean query terms, FLOPS (expected shared terms with the corpus' documents) and
the median latency of encoding + searching one query at a time.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from core.errors import DiscoError
from models.conversation import StudentInput, format_conversation
from models.splade import SpladeConfig, SpladeEncoder, quantise_sparse
from models.student import StudentCard
from retrieval import evaluation as ev
from retrieval.index.retrieve import retrieve
from retrieval.index.search import ImpactSearcher

SIGNIFICANCE = ("RR@10", "R@100")  # measures tested for disco against every other system


def held_out(turns_path: str | Path, qrels_path: str | Path, split: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The judged turns of ``split`` and their qrels."""
    turns = pl.read_parquet(turns_path).filter(pl.col("split") == split)
    qrels = pl.read_parquet(qrels_path).filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    turns = turns.filter(pl.col("turn_id").is_in(qrels["turn_id"].implode()))
    if turns.is_empty():
        raise DiscoError(f"evaluate: no judged turns in split {split!r}")
    return turns, qrels


def run_systems(turns: pl.DataFrame, encoder: SpladeConfig, student: str | Path, lucene: str | Path,
                doc_vectors: str | Path, teacher_runs: str | Path, k: int, latency_queries: int
                ) -> tuple[dict[str, pl.DataFrame], dict[str, dict]]:
    """Every system's run on ``turns`` and the efficiency of the encoder-based ones."""
    card = StudentCard.load(student)  # how the student reads a conversation, as trained
    question = dict(zip(turns["turn_id"], turns["question"]))
    conversation = {t["turn_id"]: format_conversation(t["question"], t["history"]) for t in turns.to_dicts()}
    student_text = {t["turn_id"]: card.text(t["question"], t["history"]) for t in turns.to_dicts()}
    frozen = SpladeEncoder(encoder.model, frozen=True)
    trained = SpladeEncoder(str(student), frozen=True)
    searcher = ImpactSearcher(lucene)
    runs: dict[str, pl.DataFrame] = {}
    efficiency: dict[str, dict] = {}
    doc_terms = document_terms(doc_vectors, encoder.quant_scale)
    # last_turn and conversation (the paper's format) are the untrained baselines; when the student reads
    # another format, the frozen encoder on that same text is a baseline too (what the student started from)
    systems_in = [("last_turn", frozen, question, encoder.query_max_length, "right"),
                  ("conversation", frozen, conversation, encoder.query_max_length, "right")]
    if card.input != StudentInput():
        systems_in.append(("conversation:student-input", frozen, student_text, card.max_length,
                           card.input.truncation_side()))
    systems_in.append(("disco", trained, student_text, card.max_length, card.input.truncation_side()))
    for name, enc, texts, max_length, side in systems_in:
        scale = card.quant_scale if name == "disco" else encoder.quant_scale
        got = retrieve(enc, searcher, texts, system=name, k=k, max_length=max_length,
                       batch_size=encoder.batch_size, scale=scale, truncation_side=side)
        runs[name] = got.run
        efficiency[name] = {
            "query_terms": float(np.mean([len(t) for t in got.query_terms])),
            "flops": ev.flops(got.query_terms, doc_terms, frozen.vocab_size),
            "latency_ms": latency_ms(enc, searcher, texts, latency_queries, k, max_length, scale, side),
        }
    teachers = pl.read_parquet(teacher_runs).filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    for name in sorted(set(teachers["system"]) - {"fused"}):
        runs[f"rewrite:{name}"] = teachers.filter(pl.col("system") == name)
    searcher.close()
    return runs, efficiency


def metrics(runs: dict[str, pl.DataFrame], turns: pl.DataFrame, qrels: pl.DataFrame, rel_threshold: int) -> dict:
    """Per-system measures, by conversation depth, and the paired test of ``disco`` against every other system."""
    turn_of = dict(zip(turns["turn_id"], turns["turn"]))
    systems, depth, per_q = {}, {}, {}
    for name, run in runs.items():
        per_q[name] = ev.per_query(run, qrels, rel_threshold)
        systems[name] = ev.aggregate(per_q[name])
        depth[name] = ev.by_depth(per_q[name], turn_of)
    order = ["last_turn", *sorted(n for n in runs if n.startswith("conversation")),
             *sorted(n for n in runs if n.startswith("rewrite:")), "disco"]
    return {
        "systems": {n: systems[n] for n in order}, "by_depth": {n: depth[n] for n in order},
        "significance": {n: {m: ev.paired_test(per_q["disco"], per_q[n], m) for m in SIGNIFICANCE}
                         for n in order if n != "disco"},
    }


def document_terms(path: str | Path, scale: int, limit: int = 20_000) -> list[np.ndarray]:
    """Quantised non-zero term ids of (up to ``limit``) passages, for FLOPS."""
    table = pq.ParquetFile(path).read_row_groups([0]).slice(0, limit)
    return [quantise_sparse(np.asarray(t), np.asarray(w), scale)[0]
            for t, w in zip(table.column("term_ids").to_pylist(), table.column("weights").to_pylist())]


def latency_ms(enc: SpladeEncoder, searcher: ImpactSearcher, texts: dict[str, str], queries: int, k: int,
               max_length: int, scale: int, truncation_side: str = "right") -> float:
    """Median time to encode and search one query at a time (batch size 1, one search thread)."""
    times = []
    for qid in list(texts)[:queries]:
        t0 = time.perf_counter()
        retrieve(enc, searcher, {qid: texts[qid]}, system="latency", k=k, max_length=max_length, batch_size=1,
                 scale=scale, truncation_side=truncation_side)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times) if times else float("nan")
