"""DiSCo training examples: per train turn, its positives and the teacher run's window of candidates.

Lupart, Aliannejadi, Kanoulas, SIGIR 2025 (arXiv 2410.14609), as described in :mod:`models.distill`: per turn
1 positive (qrels) and ``n_negatives`` passages sampled uniformly from the teacher run's ranks
``negative_window`` (positives removed), resampled each epoch, each with its teacher score. The frozen
document vectors come from the index stage's ``DOC_VECTORS`` table (:class:`DocStore`), never re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import polars as pl
import torch

from core.errors import DataError
from models.conversation import format_conversation


class DistillConfig(Protocol):
    """The settings examples are built with: :class:`models.distill.DistillConfig`'s (not imported here, since
    models.distill imports this module)."""

    batch_size: int
    n_negatives: int
    negative_window: tuple[int, int]
    positive_score: Literal["rank11", "teacher"]
    min_relevance: int
    seed: int
    max_turns: int | None

PathLike = str | Path


@dataclass
class Example:
    turn_id: str
    text: str
    positives: np.ndarray  # doc rows (int64)
    positive_scores: np.ndarray  # teacher score of each positive (float32)
    candidates: np.ndarray  # doc rows of the window, positives removed
    candidate_scores: np.ndarray


class DocStore:
    """The frozen document vectors needed for training, as CSR arrays (a few bytes per non-zero)."""

    def __init__(self, path: PathLike, doc_ids: pl.Series):
        table = pl.scan_parquet(path).filter(pl.col("doc_id").is_in(doc_ids.implode())).collect().to_arrow()
        ids = table.column("doc_id").to_pylist()
        if len(set(ids)) != len(ids):
            raise DataError(path, "doc_id appears more than once")
        self.row = {d: i for i, d in enumerate(ids)}
        terms, weights = (table.column(c).combine_chunks() for c in ("term_ids", "weights"))
        self.offsets = terms.offsets.to_numpy()
        self.terms = terms.values.to_numpy(zero_copy_only=False).astype(np.int64)
        self.weights = weights.values.to_numpy(zero_copy_only=False).astype(np.float32)

    def dense(self, rows: np.ndarray, vocab: int, device: str) -> torch.Tensor:
        """[len(rows), vocab] float32 matrix of the given doc rows."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        idx = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]).astype(np.int64)
        which = np.repeat(np.arange(len(rows)), ends - starts)
        out = torch.zeros(len(rows), vocab)
        out[torch.from_numpy(which), torch.from_numpy(self.terms[idx])] = torch.from_numpy(self.weights[idx])
        return out.to(device)


def build_examples(
    cfg: DistillConfig, turns_path: PathLike, qrels_path: PathLike, run_path: PathLike, vectors_path: PathLike
) -> tuple[list[Example], dict[str, int], DocStore]:
    """Train turns (the first ``max_turns`` of them, if set) -> examples; skipped turns counted by reason."""
    turns = pl.read_parquet(turns_path, columns=["turn_id", "question", "history", "split"])
    turns = turns.filter(pl.col("split") == "train")
    turns = turns.head(cfg.max_turns) if cfg.max_turns else turns
    tids = turns["turn_id"].implode()
    qrels = pl.read_parquet(qrels_path, columns=["turn_id", "doc_id", "relevance"])
    qrels = qrels.filter(pl.col("turn_id").is_in(tids), pl.col("relevance") >= cfg.min_relevance)
    run = pl.read_parquet(run_path, columns=["turn_id", "doc_id", "score", "rank"])
    run = run.filter(pl.col("turn_id").is_in(tids))
    if run.select(pl.struct("turn_id", "doc_id").is_duplicated().any()).item():
        raise DataError(run_path, "a (turn_id, doc_id) pair appears twice: fuse the teachers into one run first")
    lo, hi = cfg.negative_window
    run = run.with_columns(pl.col("rank").is_between(lo, hi).alias("window")).sort("turn_id", "rank")
    store = DocStore(vectors_path, pl.concat([qrels["doc_id"], run.filter("window")["doc_id"]]).unique())
    pos_of = {t: sorted(d) for t, d in qrels.group_by("turn_id").agg("doc_id").iter_rows()}
    run_of = {r[0]: r[1:] for r in run.group_by("turn_id").agg("doc_id", "score", "window").iter_rows()}
    examples: list[Example] = []
    skipped = dict.fromkeys(("no_positive", "positive_not_indexed", "no_teacher_run", "no_negatives"), 0)
    for t in turns.iter_rows(named=True):
        tid, pos = t["turn_id"], set(pos_of.get(t["turn_id"], []))
        indexed = [d for d in sorted(pos) if d in store.row]
        reason = "no_positive" if not pos else "positive_not_indexed" if not indexed else None
        if reason is None and tid not in run_of:
            reason = "no_teacher_run"
        if reason is None:
            docs, scores, window = run_of[tid]  # in rank order
            cand = [(d, s) for d, s, w in zip(docs, scores, window) if w and d not in pos]
            reason = None if cand else "no_negatives"
        if reason:
            skipped[reason] += 1
            continue
        missing = [d for d, _ in cand if d not in store.row]
        if missing:
            raise DataError(vectors_path, f"passage {missing[0]!r} of the teacher run (turn {tid}) has no vector")
        own = dict(zip(docs, scores))
        in_window = {d for d, w in zip(docs, window) if w}
        first = next(s for s, w in zip(scores, window) if w)  # the score at the window's first rank
        if cfg.positive_score == "rank11":
            pscores = [own[d] if d in in_window else first for d in indexed]
        else:
            pscores = [own.get(d, min(scores)) for d in indexed]
        text = format_conversation(t["question"], t["history"])
        examples.append(Example(
            tid, text, np.array([store.row[d] for d in indexed]), np.array(pscores, np.float32),
            np.array([store.row[d] for d, _ in cand]), np.array([s for _, s in cand], np.float32),
        ))
    return examples, skipped, store


def epoch_batches(examples: list[Example], cfg: DistillConfig, epoch: int):
    """Shuffled batches of (texts, doc rows [B, N], teacher scores [B, N]) for ``epoch`` (0-based):
    one positive drawn per turn, then the negatives (N = 1 + n_negatives)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    order, n = rng.permutation(len(examples)), cfg.n_negatives
    for start in range(0, len(order), cfg.batch_size):
        texts, rows, scores = [], [], []
        for ex in (examples[i] for i in order[start : start + cfg.batch_size]):
            p, k = int(rng.integers(len(ex.positives))), len(ex.candidates)
            neg = rng.permutation(k)[:n]
            if k < n:  # all candidates, then repeats drawn with replacement
                neg = np.concatenate([neg, rng.integers(0, k, n - k)])
            texts.append(ex.text)
            rows.append(np.concatenate([ex.positives[p : p + 1], ex.candidates[neg]]))
            scores.append(np.concatenate([ex.positive_scores[p : p + 1], ex.candidate_scores[neg]]))
        yield texts, np.stack(rows), np.stack(scores)
