"""The systems compared at evaluation, their effectiveness and their efficiency.

Systems (Lupart et al., SIGIR 2025, sec. 4-5): ``last_turn`` (frozen encoder on the current utterance),
``conversation`` (frozen encoder on the whole conversation in the paper's format; plus
``conversation:student-input`` when the student reads another format),
``rewrite:<teacher>`` (frozen encoder on each teacher's rewrite: the teacher runs), and ``disco`` (the student on
the conversation). Efficiency: mean query terms, FLOPS (expected shared terms with the corpus' documents) and
the median latency of encoding + searching one query at a time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from core.errors import DiscoError
from core.io import atomic_path
from core.parallel import bounds
from models.conversation import StudentInput, format_conversation
from models.impacts import quantise_lists
from models.splade import SpladeConfig, SpladeEncoder, vocab_tokens
from models.student import StudentCard
from retrieval import evaluation as ev
from retrieval.index.retrieve import CHUNK, retrieve
from retrieval.index.search import ImpactSearcher
from retrieval.index.sparse import Backend, open_searcher
from retrieval.runs import trec_lines

SIGNIFICANCE = ("RR@10", "R@100")  # measures tested for disco against every other system


def held_out(turns_path: str | Path, qrels_path: str | Path, split: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The judged turns of ``split`` and their qrels."""
    turns = pl.read_parquet(turns_path).filter(pl.col("split") == split)
    qrels = pl.read_parquet(qrels_path).filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    turns = turns.filter(pl.col("turn_id").is_in(qrels["turn_id"].implode()))
    if turns.is_empty():
        raise DiscoError(f"evaluate: no judged turns in split {split!r}")
    return turns, qrels


def _inputs(turns: pl.DataFrame, encoder: SpladeConfig, student: str | Path):
    """The encoder-based systems: (name, encoder, texts, max length, truncation side, scale) each."""
    card = StudentCard.load(student)  # how the student reads a conversation, as trained
    question = dict(zip(turns["turn_id"], turns["question"]))
    conversation = {t["turn_id"]: format_conversation(t["question"], t["history"]) for t in turns.to_dicts()}
    student_text = {t["turn_id"]: card.text(t["question"], t["history"]) for t in turns.to_dicts()}
    frozen = SpladeEncoder(encoder.model, frozen=True)
    trained = SpladeEncoder(str(student), frozen=True)
    # last_turn and conversation (the paper's format) are the untrained baselines; when the student reads
    # another format, the frozen encoder on that same text is a baseline too (what the student started from)
    q = encoder.query_max_length
    systems = [("last_turn", frozen, question, q, "right", encoder.quant_scale),
               ("conversation", frozen, conversation, q, "right", encoder.quant_scale)]
    if card.input != StudentInput():
        systems.append(("conversation:student-input", frozen, student_text, card.max_length,
                        card.input.truncation_side(), encoder.quant_scale))
    systems.append(("disco", trained, student_text, card.max_length, card.input.truncation_side(), card.quant_scale))
    return frozen, systems


def _efficiency(got, frozen: SpladeEncoder, enc: SpladeEncoder, searcher, texts: dict[str, str], doc_terms,
                latency_queries: int, k: int, max_length: int, scale: int, side: str) -> dict:
    return {"query_terms": float(np.mean([len(t) for t in got.query_terms])),
            "flops": ev.flops(got.query_terms, doc_terms, frozen.vocab_size),
            "latency_ms": latency_ms(enc, searcher, texts, latency_queries, k, max_length, scale, side)}


def run_systems(turns: pl.DataFrame, encoder: SpladeConfig, student: str | Path, lucene: str | Path,
                doc_vectors: str | Path, teacher_runs: str | Path, k: int, latency_queries: int,
                backend: Backend = "auto") -> tuple[dict[str, pl.DataFrame], dict[str, dict]]:
    """Every system's run on ``turns`` (in memory) and the efficiency of the encoder-based ones: the reference
    for :func:`evaluate_systems`, which streams."""
    frozen, systems = _inputs(turns, encoder, student)
    searcher = open_searcher(lucene, encoder.quant_scale, vocab_tokens(frozen.tokenizer), backend=backend)
    runs: dict[str, pl.DataFrame] = {}
    efficiency: dict[str, dict] = {}
    doc_terms = document_terms(doc_vectors, encoder.quant_scale)
    for name, enc, texts, max_length, side, scale in systems:
        got = retrieve(enc, searcher, texts, system=name, k=k, max_length=max_length,
                       batch_size=encoder.batch_size, scale=scale, truncation_side=side, chunk=max(len(texts), 1))
        runs[name] = got.run
        efficiency[name] = _efficiency(got, frozen, enc, searcher, texts, doc_terms, latency_queries, k, max_length,
                                       scale, side)
    teachers = pl.read_parquet(teacher_runs).filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
    for name in reported_teachers(set(teachers["system"])):
        runs[f"rewrite:{name}"] = teachers.filter(pl.col("system") == name)
    searcher.close()
    return runs, efficiency


def reported_teachers(systems: set[str]) -> list[str]:
    """The teacher runs reported as ``rewrite:<name>``: each teacher, and ``fused`` when it fuses two or more."""
    own = sorted(systems - {"fused"})
    return own + (["fused"] if "fused" in systems and len(own) > 1 else [])


def evaluate_systems(turns: pl.DataFrame, qrels: pl.DataFrame, encoder: SpladeConfig, student: str | Path,
                     lucene: str | Path, doc_vectors: str | Path, teacher_runs: str | Path, k: int,
                     latency_queries: int, rel_threshold: int, runs_dir: str | Path, backend: Backend = "auto",
                     chunk: int = CHUNK) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict]]:
    """Every system on ``turns``, streamed: each system's run is searched ``chunk`` turns at a time, and each
    ranked chunk is measured (per turn) and appended to ``runs_dir/<system>.trec`` (written atomically) before
    the next; the teacher runs are read ``chunk`` turns at a time. Returns the per-turn measures of every system
    (``{system: {turn_id: {measure: value}}}``, as :func:`retrieval.evaluation.per_query` on the whole run) and
    the efficiency of the encoder-based systems."""
    runs_dir = Path(runs_dir)
    frozen, systems = _inputs(turns, encoder, student)
    searcher = open_searcher(lucene, encoder.quant_scale, vocab_tokens(frozen.tokenizer), backend=backend)
    per_q: dict[str, dict[str, dict[str, float]]] = {}
    efficiency: dict[str, dict] = {}
    doc_terms = document_terms(doc_vectors, encoder.quant_scale)
    try:
        for name, enc, texts, max_length, side, scale in systems:
            with _run_sink(runs_dir, name, qrels, rel_threshold) as sink:
                got = retrieve(enc, searcher, texts, system=name, k=k, max_length=max_length,
                               batch_size=encoder.batch_size, scale=scale, truncation_side=side, chunk=chunk,
                               write=sink)
            per_q[name] = sink.per_q
            efficiency[name] = _efficiency(got, frozen, enc, searcher, texts, doc_terms, latency_queries, k,
                                           max_length, scale, side)
    finally:
        searcher.close()
    ids = sorted(turns["turn_id"].to_list())
    scan = pl.scan_parquet(teacher_runs)
    for name in reported_teachers(set(scan.select(pl.col("system").unique()).collect()["system"])):
        with _run_sink(runs_dir, f"rewrite:{name}", qrels, rel_threshold) as sink:
            for a, b in bounds(len(ids), chunk):  # the range lets row-group statistics skip the rest of the file
                turn = pl.col("turn_id")
                sink(scan.filter((pl.col("system") == name) & turn.is_between(pl.lit(ids[a]), pl.lit(ids[b - 1]))
                                 & turn.is_in(ids[a:b])).collect())
        per_q[f"rewrite:{name}"] = sink.per_q
    return per_q, efficiency


class _Measured:
    """A run's ranked chunks (in turn order) as they come: each chunk's turns are measured and the chunk is
    appended to the open TREC file."""

    def __init__(self, file, name: str, qrels: pl.DataFrame, rel_threshold: int):
        self.file, self.name, self.qrels, self.rel = file, name, qrels, rel_threshold
        judged = sorted(set(qrels.filter(pl.col("relevance") >= rel_threshold)["turn_id"].to_list()))
        self.per_q = {t: {m: 0.0 for m in ev.MEASURES} for t in judged}  # a judged turn with no hits scores 0

    def __call__(self, run: pl.DataFrame) -> None:
        trec_lines(self.file, run, self.name)
        if run.height:
            turns = run["turn_id"].unique().implode()
            self.per_q.update(ev.per_query(run, self.qrels.filter(pl.col("turn_id").is_in(turns)), self.rel))


@contextlib.contextmanager
def _run_sink(runs_dir: Path, name: str, qrels: pl.DataFrame, rel_threshold: int):
    """A :class:`_Measured` writing ``runs_dir/<name>.trec`` (renamed into place when the block succeeds)."""
    with atomic_path(runs_dir / f"{name.replace(':', '-')}.trec") as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield _Measured(f, name, qrels, rel_threshold)


def metrics(runs: dict[str, pl.DataFrame], turns: pl.DataFrame, qrels: pl.DataFrame, rel_threshold: int) -> dict:
    """Per-system measures, by conversation depth, and the paired test of ``disco`` against every other system."""
    return summarize({name: ev.per_query(run, qrels, rel_threshold) for name, run in runs.items()}, turns)


def summarize(per_q: dict[str, dict[str, dict[str, float]]], turns: pl.DataFrame) -> dict:
    """:func:`metrics` from the per-turn measures of every system."""
    turn_of = dict(zip(turns["turn_id"], turns["turn"]))
    systems = {name: ev.aggregate(v) for name, v in per_q.items()}
    depth = {name: ev.by_depth(v, turn_of) for name, v in per_q.items()}
    order = ["last_turn", *sorted(n for n in per_q if n.startswith("conversation")),
             *sorted(n for n in per_q if n.startswith("rewrite:")), "disco"]
    return {
        "systems": {n: systems[n] for n in order}, "by_depth": {n: depth[n] for n in order},
        "significance": {n: {m: ev.paired_test(per_q["disco"], per_q[n], m) for m in SIGNIFICANCE}
                         for n in order if n != "disco"},
    }


def document_terms(path: str | Path, scale: int, limit: int = 20_000) -> list[np.ndarray]:
    """Quantised non-zero term ids of (up to ``limit``) passages of the first row group, for FLOPS: the term ids
    whose ``round(w * scale)`` is positive (:func:`models.impacts.quantise_lists`)."""
    table = pq.ParquetFile(path).read_row_groups([0], columns=["term_ids", "weights"]).slice(0, limit)
    terms, weights = (table.column(c).combine_chunks() for c in ("term_ids", "weights"))
    if not len(terms):
        return []
    counts, kept, _ = quantise_lists(terms, weights, scale)
    return np.split(kept, np.cumsum(counts)[:-1])


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
