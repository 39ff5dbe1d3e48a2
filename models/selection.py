"""Model selection on dev turns during distillation: score the student after each epoch, keep the best.

The frozen document vectors are already at hand (the index stage's ``DOC_VECTORS``), so scoring a student on
the dev turns is one encoding pass over their conversations and one sparse matrix product: no Lucene round trip.
Queries and passages are quantised exactly as in the impact index (``round(w * scale)``), so on a corpus
ranked in full the dev figures are those the evaluate stage would compute with Lucene (up to ties). Large
corpora are not ranked in full: the dev turns' candidates are the union of their teacher run's top passages
and their judged passages (a re-ranking measure, stated in the summary as ``dev_ranked``).

Only the dev split is ever scored here; the test split never takes part in choosing anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp
import torch

from models.examples import corpus_size
from models.impacts import quantise_lists

PathLike = str | Path
FULL_CORPUS_LIMIT = 200_000  # passages ranked in full up to this size; above it, the teacher's candidates
READ_BATCH = 16_384  # passages whose vectors are decoded and quantised at a time


@dataclass
class DevSet:
    """Judged dev turns (their student texts and graded qrels) and the quantised passages they are ranked in."""

    turn_ids: list[str]
    texts: list[str]
    qrels: list[dict[int, int]]  # per turn: column of ``docs`` -> grade
    docs: sp.csr_matrix  # [n_passages, vocab] int32 impacts
    doc_ids: list[str]  # of the rows of ``docs`` (the vector file's order)
    id_rank: np.ndarray  # per row of ``docs``: its place among the sorted ids (ties are broken by it)
    ranked: str  # "corpus" or "candidates"
    min_relevance: int = 1
    questions: list[str] = field(default_factory=list)  # each turn's utterance alone (the last-turn baseline)

    @classmethod
    def load(cls, turns_path: PathLike, qrels_path: PathLike, vectors_path: PathLike, run_path: PathLike | None,
             text_of, vocab: int, scale: int, min_relevance: int = 1, split: str = "dev",
             candidates_k: int = 100) -> "DevSet | None":
        """The judged turns of ``split`` or None when there are none. ``text_of(question, history)`` formats a
        turn as the student reads it."""
        turns = pl.read_parquet(turns_path, columns=["turn_id", "question", "history", "split"])
        turns = turns.filter(pl.col("split") == split)
        qrels = pl.read_parquet(qrels_path, columns=["turn_id", "doc_id", "relevance"])
        qrels = qrels.filter(pl.col("turn_id").is_in(turns["turn_id"].implode()))
        judged = set(qrels.filter(pl.col("relevance") >= min_relevance)["turn_id"])
        turns = turns.filter(pl.col("turn_id").is_in(list(judged))).sort("turn_id")
        if turns.is_empty():
            return None
        # the passages in the file's order, read a batch at a time (never the whole table, nor a sorted copy)
        vectors, keep, ranked = pq.ParquetFile(vectors_path), None, "corpus"
        ids = vectors.read(columns=["doc_id"]).column("doc_id").combine_chunks()
        if corpus_size(vectors_path) > FULL_CORPUS_LIMIT:
            if run_path is None:
                return None
            top = (pl.scan_parquet(run_path).select("turn_id", "doc_id", "rank")
                   .filter(pl.col("turn_id").is_in(turns["turn_id"].implode()), pl.col("rank") <= candidates_k)
                   .collect())
            keep = pl.concat([top["doc_id"], qrels["doc_id"]]).unique().to_arrow().cast(ids.type)
            ids, ranked = ids.filter(pc.is_in(ids, value_set=keep)), "candidates"
        batches = (b if keep is None else b.filter(pc.is_in(b.column("doc_id"), value_set=keep))
                   for b in vectors.iter_batches(batch_size=READ_BATCH))
        docs = quantised_matrix(batches, scale, vocab)
        id_rank = np.empty(len(ids), np.int64)
        id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(len(ids))
        doc_ids = ids.to_pylist()
        col = {d: i for i, d in enumerate(doc_ids)}
        grades: dict[str, dict[int, int]] = {}
        for t, d, r in qrels.iter_rows():
            if d in col:
                grades.setdefault(t, {})[col[d]] = int(r)
        texts = [text_of(t["question"], t["history"]) for t in turns.iter_rows(named=True)]
        return cls(turns["turn_id"].to_list(), texts, [grades.get(t, {}) for t in turns["turn_id"]], docs,
                   doc_ids, id_rank, ranked, min_relevance, turns["question"].to_list())

    def score(self, encode, scale: int) -> dict[str, float]:
        """RR@10, nDCG@3, R@10, R@100 of the queries ``encode(texts) -> [B, vocab] float tensor``, and their
        sparsity: ``terms`` (mean non-zero quantised query terms) and ``flops`` (expected shared terms with a
        passage, Paria et al. 2020, as the evaluate stage reports it)."""
        q = _quantised(encode(self.texts), scale)
        scores = np.asarray((self.docs @ sp.csr_matrix(q).T).todense()).T  # [turns, docs]
        per_turn = [_measures(row, g, self.min_relevance, self.id_rank) for row, g in zip(scores, self.qrels)]
        out = {m: float(np.mean([p[m] for p in per_turn])) for m in MEASURES}
        return {**out, **self._sparsity(q)}

    def question_terms(self, encode, scale: int) -> float:
        """Mean non-zero quantised terms of the turns' utterances alone (the last-turn query), by ``encode``."""
        return self._sparsity(_quantised(encode(self.questions), scale))["terms"]

    @cached_property
    def doc_share(self) -> np.ndarray:
        """Per vocabulary term, the share of the passages that contain it (computed once: the passages are fixed)."""
        vocab = self.docs.shape[1]
        return np.bincount(self.docs.indices, minlength=vocab)[:vocab] / max(self.docs.shape[0], 1)

    def _sparsity(self, q: np.ndarray) -> dict[str, float]:
        present = q > 0
        return {"terms": float(present.sum(axis=1).mean()), "flops": float((present @ self.doc_share).mean())}


@dataclass
class PooledDev:
    """The dev turns of several training datasets (each ranked in its own corpus), scored as one set: every dev
    turn counts once (a micro-average), so a pooled run chooses its epoch on more turns than the first dataset's
    alone (on MTRAG-UN ClapNQ, 15 judged dev turns: one turn moves RR@10 by up to 0.067)."""

    sets: list[DevSet]

    @property
    def turn_ids(self) -> list[str]:
        return [t for d in self.sets for t in d.turn_ids]

    @property
    def ranked(self) -> str:
        return "+".join(sorted({d.ranked for d in self.sets}))

    def score(self, encode, scale: int) -> dict[str, float]:
        """The measures of :meth:`DevSet.score` averaged over every dev turn of every set."""
        n = len(self.turn_ids)
        parts = [(len(d.turn_ids), d.score(encode, scale)) for d in self.sets]
        return {m: sum(k * p[m] for k, p in parts) / n for m in parts[0][1]}

    def question_terms(self, encode, scale: int) -> float:
        return sum(len(d.turn_ids) * d.question_terms(encode, scale) for d in self.sets) / len(self.turn_ids)


MEASURES = ("RR@10", "nDCG@3", "R@10", "R@100")


@dataclass(frozen=True)
class Rule:
    """How dev rows (epochs, interpolation mixes, searched settings) are compared: the best ``metric`` among
    the rows within the query-term budget ``max_terms`` (a row's mean dev query terms), ties to the earlier
    row; when no row is within the budget, the sparsest row (the budget is a goal, not a reason to fail)."""

    metric: str = "RR@10"
    max_terms: float | None = None

    def within(self, row: dict) -> bool:
        return self.max_terms is None or row.get("terms", 0.0) <= self.max_terms

    def best(self, rows: Sequence[dict]) -> dict:
        if not rows:
            raise ValueError("no dev rows to choose from")
        ok = [i for i, r in enumerate(rows) if self.within(r)]
        if not ok:
            return min(rows, key=lambda r: (r["terms"], -r[self.metric]))
        return rows[max(ok, key=lambda i: (rows[i][self.metric], -i))]


def _quantised(reps: torch.Tensor, scale: int) -> np.ndarray:
    q = np.rint(reps.float().cpu().numpy().astype(np.float64) * scale).astype(np.int64)
    q[q < 0] = 0
    return q


def quantised_matrix(batches: Iterable[pa.RecordBatch], scale: int, vocab: int) -> sp.csr_matrix:
    """[passages, vocab] int32 impacts of ``term_ids`` / ``weights`` record batches (one row per passage, in
    order), quantised as in the impact index (:func:`models.impacts.quantise_lists`, one batch at a time)."""
    indptr, indices, data, nnz = [np.zeros(1, np.int64)], [], [], 0
    for part in batches:
        counts, terms, q = quantise_lists(part.column("term_ids"), part.column("weights"), scale)
        indptr.append(nnz + np.cumsum(counts))
        indices.append(terms)
        data.append(q)
        nnz += len(q)
    indptr = np.concatenate(indptr)
    return sp.csr_matrix((np.concatenate(data) if data else np.zeros(0, np.int32),
                          np.concatenate(indices) if indices else np.zeros(0, np.int32), indptr),
                         shape=(len(indptr) - 1, vocab))


def _measures(scores: np.ndarray, grades: dict[int, int], min_rel: int, tiebreak: np.ndarray) -> dict[str, float]:
    """Measures of one turn; ties broken by ``tiebreak`` (the passages' places in id order), all-zero scores
    retrieve nothing."""
    hits = np.flatnonzero(scores > 0)
    order = hits[np.lexsort((tiebreak[hits], -scores[hits]))][:100]
    rel = {d for d, g in grades.items() if g >= min_rel}
    rr = next((1.0 / (i + 1) for i, d in enumerate(order[:10]) if d in rel), 0.0)
    gains = [grades.get(int(d), 0) for d in order[:3]]  # trec_eval's linear gains, as ir-measures
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(grades.values(), reverse=True)[:3]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return {"RR@10": rr, "nDCG@3": dcg / idcg if idcg else 0.0,
            "R@10": len(rel & set(order[:10].tolist())) / max(len(rel), 1),
            "R@100": len(rel & set(order.tolist())) / max(len(rel), 1)}


def encode_fn(student, max_length: int, truncation_side: str, batch_size: int = 32):
    """``texts -> [B, vocab]`` reps of ``student`` in eval mode without gradients (restores its mode)."""

    def encode(texts: list[str]) -> torch.Tensor:
        was = student.training
        student.eval()
        try:
            with torch.inference_mode():
                return torch.cat([student(texts[i : i + batch_size], max_length, truncation_side).float()
                                  for i in range(0, len(texts), batch_size)])
        finally:
            student.train(was)

    return encode
