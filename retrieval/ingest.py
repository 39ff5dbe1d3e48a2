"""Ingest: any reader's records -> validated Parquet tables (turns, corpus, qrels), written atomically.

Checks that hold for every format live here, so every reader gets them: duplicate turn or passage ids, empty
texts, qrels naming unknown turns or passages, and what later stages would trip on (types, turn numbers, ids
that break TREC files, sizes: :mod:`retrieval.validate`). ``strict`` makes each problem an error naming the file and line;
otherwise the record is skipped and counted, and the counts are returned for the stage's artifact.
The corpus streams into Parquet in row groups (a 25M-passage collection never sits in memory; only its ids do).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import schema
from retrieval.datasets import DatasetReader
from retrieval.datasets.base import Where
from core.errors import DataError
from core.io import atomic_path, write_parquet
from retrieval.validate import Problem, passage_problem, qrel_problem, turn_problem

_ROW_GROUP = 50_000


class SplitConfig(BaseModel):
    """How turns are split when the dataset gives no split: whole conversations, fixed by ``seed``.

    ``dev_fraction`` carves a dev split out of what would be train (the test conversations do not change), for
    choosing settings without looking at the test split (``benchmarks/ablations.py`` evaluates on it).
    """

    model_config = ConfigDict(extra="forbid")

    # conversation: the sorted ids shuffled with the seed (adding conversations moves others); hash: each
    # conversation's own hash with the seed decides, so a dataset that grows keeps every conversation's split
    method: Literal["dataset", "conversation", "hash"] = "conversation"
    test_fraction: float = Field(0.3, ge=0.0, le=1.0)
    dev_fraction: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = 13

    @model_validator(mode="after")
    def _fractions(self) -> "SplitConfig":
        if self.test_fraction + self.dev_fraction > 1.0:
            raise ValueError(f"test_fraction + dev_fraction must be <= 1, got "
                             f"{self.test_fraction} + {self.dev_fraction}")
        return self


class Problems:
    """Collects skipped records (lenient mode) or raises at the first one (strict mode)."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def admit(self, seen: set[str], record_id: str, text: str | None, where: Where, what: str, text_name: str
              ) -> bool:
        """Admit a record unless its id repeats or its text is empty; an admitted id joins ``seen``."""
        if record_id in seen:
            self.report(f"duplicate_{what}", where, f"duplicate {what} id {record_id!r}", record_id)
            return False
        if not text or not text.strip():
            self.report(f"empty_{text_name.split()[0]}", where, f"empty {text_name}", record_id)
            return False
        seen.add(record_id)
        return True

    def check(self, found: Problem, where: Where, record: object = None) -> bool:
        """True when a :mod:`retrieval.validate` check found nothing; else report the problem."""
        if found is None:
            return True
        self.report(found[0], where, found[1], record if isinstance(record, str) else None)
        return False

    def report(self, kind: str, where: Where, problem: str, record: str | None = None) -> None:
        if self.strict:
            raise DataError(where[0], problem, line=where[1], record=record)
        self.counts[kind] += 1
        self.examples.setdefault(kind, str(DataError(where[0], problem, line=where[1], record=record)))


def assign_splits(conversation_ids: list[str], cfg: SplitConfig) -> dict[str, str]:
    """Deterministic conversation-level split: sorted ids shuffled with ``seed``; the first ``test_fraction``
    is test, the next ``dev_fraction`` dev, the rest train."""
    ids = sorted(set(conversation_ids))
    if cfg.method == "hash":  # a point in [0, 1) per conversation: stable as the dataset grows
        def point(cid: str) -> float:
            return int(hashlib.sha256(f"{cfg.seed}:{cid}".encode()).hexdigest()[:15], 16) / 16**15

        return {cid: ("test" if point(cid) < cfg.test_fraction else
                      "dev" if point(cid) < cfg.test_fraction + cfg.dev_fraction else "train") for cid in ids}
    random.Random(cfg.seed).shuffle(ids)
    n_test = round(len(ids) * cfg.test_fraction)
    n_dev = round(len(ids) * cfg.dev_fraction)
    return {cid: ("test" if i < n_test else "dev" if i < n_test + n_dev else "train") for i, cid in enumerate(ids)}


def ingest(reader: DatasetReader, out_dir: Path, split: SplitConfig, strict: bool = True) -> dict:
    """Write ``turns.parquet``, ``corpus.parquet`` and ``qrels.parquet`` under ``out_dir``; return counts."""
    problems = Problems(strict)
    out_dir.mkdir(parents=True, exist_ok=True)

    seen_turns: set[str] = set()
    dataset_splits = split.method == "dataset"
    turns = [t for t in reader.turns()
             if problems.check(turn_problem(t, dataset_splits), t.where, t.turn_id)
             and problems.admit(seen_turns, t.turn_id, t.question, t.where, "turn", "question")]
    if not turns:
        raise DataError(reader.root, f"no conversation turns found for format {reader.name!r}")

    if split.method == "dataset" and any(t.split is None for t in turns):
        missing = next(t for t in turns if t.split is None)
        raise DataError(missing.where[0], "split method 'dataset' but this turn has no split", record=missing.turn_id)
    by_conv = assign_splits([t.conversation_id for t in turns], split) if split.method != "dataset" else {}
    table = pa.Table.from_pylist(
        [
            {
                "turn_id": t.turn_id,
                "conversation_id": t.conversation_id,
                "turn": t.turn,
                "question": t.question.strip(),
                "history": [{"role": r, "text": x} for r, x in t.history],
                "answer": t.answer,
                "human_rewrite": (t.human_rewrite or "").strip() or None,
                "split": t.split if split.method == "dataset" else by_conv[t.conversation_id],
            }
            for t in turns
        ],
        schema=schema.TURNS,
    )
    write_parquet(out_dir / "turns.parquet", table)

    doc_ids = _write_corpus(reader, out_dir / "corpus.parquet", problems)

    qrels, seen_pairs = [], set()
    for q in reader.qrels():
        if not problems.check(qrel_problem(q), q.where, q.turn_id):
            continue
        if q.turn_id not in seen_turns:
            problems.report("qrel_unknown_turn", q.where, f"qrel names unknown turn {q.turn_id!r}", q.turn_id)
            continue
        if reader.has_corpus and q.doc_id not in doc_ids:
            problems.report("qrel_unknown_passage", q.where, f"qrel names unknown passage {q.doc_id!r}", q.turn_id)
            continue
        if (q.turn_id, q.doc_id) in seen_pairs:
            problems.report("duplicate_qrel", q.where, f"duplicate qrel ({q.turn_id}, {q.doc_id})", q.turn_id)
            continue
        seen_pairs.add((q.turn_id, q.doc_id))
        qrels.append({"turn_id": q.turn_id, "doc_id": q.doc_id, "relevance": q.relevance})
    write_parquet(out_dir / "qrels.parquet", pa.Table.from_pylist(qrels, schema=schema.QRELS))

    splits = Counter(table.column("split").to_pylist())
    return {
        "format": reader.name,
        "conversations": len({t.conversation_id for t in turns}),
        "turns": len(turns),
        "turns_with_qrels": len({q["turn_id"] for q in qrels}),
        "turns_with_human_rewrite": sum(1 for t in turns if t.human_rewrite),
        "passages": len(doc_ids),
        "qrels": len(qrels),
        "splits": dict(sorted(splits.items())),
        "skipped": dict(problems.counts),
        "skipped_examples": problems.examples,
    }


def _write_corpus(reader: DatasetReader, path: Path, problems: Problems) -> set[str]:
    """Stream passages into Parquet row groups; return the set of ids."""
    ids: set[str] = set()
    batch: list[dict] = []
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema.CORPUS, compression="zstd") as writer:
        for p in reader.passages():
            if not problems.check(passage_problem(p), p.where, p.doc_id) or \
                    not problems.admit(ids, p.doc_id, p.text, p.where, "passage", "passage text"):
                continue
            batch.append({"doc_id": p.doc_id, "title": p.title or "", "text": p.text.strip()})
            if len(batch) >= _ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema.CORPUS))
                batch = []
        writer.write_table(pa.Table.from_pylist(batch, schema=schema.CORPUS))
    return ids
