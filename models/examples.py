"""DiSCo training examples: per train turn, its positives and the teacher run's window of candidates.

Lupart, Aliannejadi, Kanoulas, SIGIR 2025 (arXiv 2410.14609), as described in :mod:`models.distill`: per turn
1 positive (qrels) and ``n_negatives`` passages sampled uniformly from the teacher run's ranks
``negative_window`` (positives removed), resampled each epoch, each with its teacher score. The frozen
document vectors come from the index stage's ``DOC_VECTORS`` table (:class:`DocStore`), never re-encoded.

Several training datasets (:class:`Source`, each with its own turns, qrels, teacher run and document vectors)
pool into one list of examples; their passages share one :class:`DocStore` under dataset-qualified rows.

The window rule (:func:`window_for`). The authors sample ranks 11..960 of a top-1000 run over corpora of
millions of passages (TopiOCQA 25.7M, QReCC 54M): ranks 1-10 are left out as likely unjudged positives, and
the positive gets the rank-11 score when it sits above the window. On a corpus of a few hundred passages that
window holds everything but the top 10, i.e. off-topic passages, while the near misses the student must learn
to separate sit at ranks 2-10; and the positive, usually at teacher rank 1-3, gets the rank-11 score, so the
KL target hardly separates it from its negatives. So the window scales with the corpus: ranks
``2 .. clamp(corpus / 8, 4 * n_negatives, 960)`` below ``SMALL_CORPUS`` passages, the positive keeping its own
teacher score; the paper's ranks 11..960 with the rank-11 rule from ``SMALL_CORPUS`` passages on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import polars as pl
import torch

from core.errors import DataError
from models.losses import needs_targets

if TYPE_CHECKING:
    from models.distill_config import DistillConfig

PathLike = str | Path
SMALL_CORPUS = 100_000  # passages; from here on the paper's window applies
TURN_CHUNK = 1024  # turns whose teacher-run rows are read (and held) at a time while the examples are built
PAPER_WINDOW = (11, 960)


def window_for(corpus_size: int, k: int, n_negatives: int) -> tuple[int, int]:
    """The negative window (1-based teacher ranks, inclusive) for a corpus of ``corpus_size`` passages and a
    teacher run of depth ``k`` (see the module docstring)."""
    if corpus_size >= SMALL_CORPUS:
        lo, hi = PAPER_WINDOW
    else:
        lo, hi = 2, min(max(math.ceil(corpus_size / 8), 4 * n_negatives), PAPER_WINDOW[1])
    return lo, max(lo, min(hi, k))


def sampling(cfg: DistillConfig, corpus_size: int, k: int) -> tuple[tuple[int, int], str]:
    """(negative window, positive-score policy) that ``cfg`` resolves to for this corpus and run depth."""
    window = window_for(corpus_size, k, cfg.n_negatives) if cfg.negative_window == "auto" else \
        tuple(cfg.negative_window)
    policy = cfg.positive_score
    if policy == "auto":
        policy = "rank11" if window[0] >= PAPER_WINDOW[0] else "teacher"
    return window, policy


@dataclass
class Source:
    """One training dataset: its ingest tables, the teacher run the student learns from, its passage vectors."""

    turns: PathLike
    qrels: PathLike
    run: PathLike
    vectors: PathLike
    name: str = ""  # prefixes its turn and passage ids when several sources pool
    pseudo_positives: bool = False  # turns without qrels take the teacher's top passage as positive
    rewrites: PathLike | None = None  # the rewrite stage's table: representation distillation's targets
    systems: tuple[str, ...] = ()  # the teachers fused into ``run`` (their rewrites are the targets)
    learn_from: str | None = None  # whom ``run`` is from when not ``distill.learn_from`` (a pooled dataset's own)


@dataclass
class Example:
    turn_id: str
    text: str
    positives: np.ndarray  # doc rows (int64)
    positive_scores: np.ndarray  # teacher score of each positive (float32)
    candidates: np.ndarray  # doc rows of the window, positives removed
    candidate_scores: np.ndarray
    pseudo: bool = False
    targets: tuple[str, ...] = ()  # the teachers' rewrites of this turn (representation distillation)


@dataclass
class DocStore:
    """The frozen document vectors needed for training, as CSR arrays (8 bytes per non-zero: int32 term ids,
    float32 weights)."""

    row: dict[str, int] = field(default_factory=dict)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    terms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def add(self, path: PathLike, doc_ids: pl.Series, prefix: str = "") -> None:
        """Load the vectors of ``doc_ids`` from ``path``, keyed ``prefix + doc_id``."""
        table = pl.scan_parquet(path).filter(pl.col("doc_id").is_in(doc_ids.implode())).collect().to_arrow()
        ids = table.column("doc_id").to_pylist()
        if len(set(ids)) != len(ids):
            raise DataError(path, "doc_id appears more than once")
        terms, weights = (table.column(c).combine_chunks() for c in ("term_ids", "weights"))
        base = len(self.row)
        self.row.update({prefix + d: base + i for i, d in enumerate(ids)})
        offsets = terms.offsets.to_numpy().astype(np.int64)
        self.offsets = np.concatenate([self.offsets, self.offsets[-1] + offsets[1:]])
        self.terms = np.concatenate([self.terms, terms.values.to_numpy(zero_copy_only=False).astype(np.int32)])
        self.weights = np.concatenate([self.weights,
                                       weights.values.to_numpy(zero_copy_only=False).astype(np.float32)])

    def dense(self, rows: np.ndarray, vocab: int, device: str) -> torch.Tensor:
        """[len(rows), vocab] float32 matrix of the given doc rows."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        idx = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]).astype(np.int64)
        which = np.repeat(np.arange(len(rows)), ends - starts)
        out = torch.zeros(len(rows), vocab)
        out[torch.from_numpy(which), torch.from_numpy(self.terms[idx].astype(np.int64))] = \
            torch.from_numpy(self.weights[idx])
        return out.to(device)


def corpus_size(vectors_path: PathLike) -> int:
    return int(pl.scan_parquet(vectors_path).select(pl.len()).collect().item())


def build_examples(
    cfg: DistillConfig, sources: list[Source], text_of: Callable[[str, list], str], k: int = 1000,
    turn_chunk: int = TURN_CHUNK,
) -> tuple[list[Example], dict[str, int], DocStore, dict]:
    """Train turns of every source -> examples; skipped turns counted by reason; the sampling used per source.

    ``text_of(question, history)`` formats a turn as the student reads it. ``cfg.max_turns`` caps the turns
    taken from each source; each source's teacher run is read ``turn_chunk`` turns at a time.
    """
    store, examples, used = DocStore(), [], {}
    skipped = dict.fromkeys(("no_positive", "positive_not_indexed", "no_teacher_run", "no_teacher_rewrite",
                             "no_negatives"), 0)
    for src in sources:
        window, policy = sampling(cfg, corpus_size(src.vectors), k)
        used[src.name or "data"] = {"negative_window": list(window), "positive_score": policy}
        got = _examples(cfg, src, window, policy, text_of, store, skipped, turn_chunk)
        examples += got
        used[src.name or "data"]["examples"] = len(got)
    return examples, skipped, store, used


def _examples(cfg: DistillConfig, src: Source, window: tuple[int, int], policy: str, text_of, store: DocStore,
              skipped: dict[str, int], chunk: int = TURN_CHUNK) -> list[Example]:
    """The examples of one source's train turns (in the turns table's order). The teacher run is read
    ``chunk`` turns at a time, twice: first for the passages the examples need (their vectors are loaded into
    ``store`` at once, in the vector file's order), then to build the examples; only one chunk's rows are
    ever held, and as Python objects only while that chunk's examples are built."""
    pre = f"{src.name}/" if src.name else ""
    turns = pl.read_parquet(src.turns, columns=["turn_id", "question", "history", "split"])
    turns = turns.filter(pl.col("split") == "train")
    turns = turns.head(cfg.max_turns) if cfg.max_turns else turns
    tids = turns["turn_id"].implode()
    qrels = pl.read_parquet(src.qrels, columns=["turn_id", "doc_id", "relevance"])
    qrels = qrels.filter(pl.col("turn_id").is_in(tids), pl.col("relevance") >= cfg.min_relevance)
    parts = [turns[a : a + chunk] for a in range(0, turns.height, chunk)]
    needed = qrels["doc_id"].unique()
    for part in parts:  # pass 1: the passages of the windows (and the pseudo-positives), no Python objects
        run = _run_rows(src, part["turn_id"], window)
        docs = [needed, run.filter("window")["doc_id"]]
        if src.pseudo_positives:
            docs.append(run.filter(pl.col("rank") == 1)["doc_id"])
        needed = pl.concat(docs).unique()
    store.add(src.vectors, needed, pre)
    targets_of: dict[str, tuple[str, ...]] = {}
    if needs_targets(cfg.loss):
        if src.rewrites is None:
            raise DataError(src.run, "loss 'rep_mse' needs the teachers' rewrites (Source.rewrites)")
        own = src.learn_from or cfg.learn_from
        names = list(src.systems) if own == "fused" else [own]
        rw = pl.read_parquet(src.rewrites, columns=["turn_id", "teacher", "rewrite"]).filter(
            pl.col("turn_id").is_in(tids), pl.col("teacher").is_in(names)).sort("turn_id", "teacher")
        targets_of = {t: tuple(x) for t, x in rw.group_by("turn_id", maintain_order=True).agg("rewrite").iter_rows()}
    pos_of = {t: sorted(d) for t, d in qrels.group_by("turn_id").agg("doc_id").iter_rows()}
    out: list[Example] = []
    for part in parts:  # pass 2: this chunk's examples
        run = _run_rows(src, part["turn_id"], window)
        run_of = {r[0]: r[1:] for r in run.group_by("turn_id").agg("doc_id", "score", "window").iter_rows()}
        out += [ex for t in part.iter_rows(named=True)
                if (ex := _example(t, src, pre, pos_of, run_of, targets_of, policy, text_of, cfg, store, skipped))]
    return out


def _run_rows(src: Source, ids: pl.Series, window: tuple[int, int]) -> pl.DataFrame:
    """The teacher run's rows of the turns ``ids``, sorted by turn and rank, with the column ``window`` (the rank
    lies in the negative window). The turn-id range lets row-group statistics skip the rest of a sorted file."""
    turn = pl.col("turn_id")
    run = (pl.scan_parquet(src.run).select("turn_id", "doc_id", "score", "rank")
           .filter(turn.is_between(pl.lit(ids.min()), pl.lit(ids.max())) & turn.is_in(ids.implode())).collect())
    if run.select(pl.struct("turn_id", "doc_id").is_duplicated().any()).item():
        raise DataError(src.run, "a (turn_id, doc_id) pair appears twice: fuse the teachers into one run first")
    return run.with_columns(pl.col("rank").is_between(*window).alias("window")).sort("turn_id", "rank")


def _example(t: dict, src: Source, pre: str, pos_of: dict, run_of: dict, targets_of: dict, policy: str, text_of,
             cfg: DistillConfig, store: DocStore, skipped: dict[str, int]) -> Example | None:
    """One turn's example, or None (counted in ``skipped`` by reason)."""
    tid, pos = t["turn_id"], set(pos_of.get(t["turn_id"], []))
    pseudo = False
    if not pos and src.pseudo_positives and tid in run_of:
        pos, pseudo = {run_of[tid][0][0]}, True  # the teacher's top passage stands in for a judgement
    indexed = [d for d in sorted(pos) if pre + d in store.row]
    reason = "no_positive" if not pos else "positive_not_indexed" if not indexed else None
    if reason is None and tid not in run_of:
        reason = "no_teacher_run"
    if reason is None and needs_targets(cfg.loss) and tid not in targets_of:
        reason = "no_teacher_rewrite"
    if reason is None:
        docs, scores, in_win = run_of[tid]  # in rank order
        cand = [(d, s) for d, s, w in zip(docs, scores, in_win) if w and d not in pos]
        reason = None if cand else "no_negatives"
    if reason:
        skipped[reason] += 1
        return None
    missing = [d for d, _ in cand if pre + d not in store.row]
    if missing:
        raise DataError(src.vectors, f"passage {missing[0]!r} of the teacher run (turn {tid}) has no vector")
    own = dict(zip(docs, scores))
    window_docs = {d for d, w in zip(docs, in_win) if w}
    first = next(s for s, w in zip(scores, in_win) if w)  # the score at the window's first rank
    if policy == "rank11":
        pscores = [own[d] if d in window_docs else first for d in indexed]
    else:
        pscores = [own.get(d, min(scores)) for d in indexed]
    return Example(
        pre + tid, text_of(t["question"], t["history"]), np.array([store.row[pre + d] for d in indexed]),
        np.array(pscores, np.float32), np.array([store.row[pre + d] for d, _ in cand]),
        np.array([s for _, s in cand], np.float32), pseudo, targets_of.get(tid, ()),
    )


def epoch_batches(examples: list[Example], cfg: DistillConfig, epoch: int, with_index: bool = False):
    """Shuffled batches of (texts, doc rows [B, N], teacher scores [B, N]) for ``epoch`` (0-based):
    one positive drawn per turn, then the negatives (N = 1 + n_negatives); ``with_index`` adds the examples'
    positions as a fourth item."""
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
        batch = (texts, np.stack(rows), np.stack(scores))
        yield (*batch, order[start : start + cfg.batch_size]) if with_index else batch
