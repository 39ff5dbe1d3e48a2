"""Teacher runs: each teacher's rewrites through the frozen encoder -> top-k passages with scores, and the
fused teacher (Lupart et al., SIGIR 2025, sec. 3.2: the student learns these scores).

:func:`write_teacher_runs` (the teacher stage) streams: each shard of a teacher's turns (contiguous in turn-id
order) is searched ``chunk`` queries at a time and every ranked chunk goes to that shard's Parquet file as it
comes (:func:`retrieve_shard`, through :func:`core.parallel.pmap`: here, or as tasks on a cluster); the shards'
files are then copied into ``runs.parquet`` and the fused run is computed ``chunk`` turns at a time from them, so
100k turns x k=1000 (100M rows per teacher) never sit in memory at once. :func:`teacher_runs` is the same
computation in memory, kept as the reference the streamed one is tested against (tests/retrieval/test_teachers.py)
and measured against (benchmarks/teacher_memory.py).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from core import schema
from core.errors import DiscoError
from core.io import TMP_SUFFIX, atomic_path
from core.parallel import bounds, distributed, pmap
from models.splade import SpladeConfig
from retrieval.index.encode import frozen_encoder
from retrieval.index.ranking import rank
from retrieval.index.retrieve import CHUNK, encoder_tokens, retrieve
from retrieval.index.sparse import Backend, open_searcher
from retrieval.runs import Fusion, fuse

EMPTY_RUN = {"turn_id": pl.String, "doc_id": pl.String, "score": pl.Float64}
# runs.parquet's Arrow types (polars writes large strings; kept so the file reads back exactly as before)
RUNS_FILE = pa.schema([(f.name, pa.large_string() if f.type == pa.string() else f.type) for f in schema.RUNS])


def _texts(rewrites: pl.DataFrame, teachers: list[str]) -> dict[str, list[tuple[str, str]]]:
    missing = [t for t in teachers if t not in set(rewrites["teacher"])]
    if missing:
        raise DiscoError(f"teacher stage: no rewrites for {missing}; the rewrite stage produced "
                         f"{sorted(set(rewrites['teacher']))}")
    texts = {}
    for name in teachers:
        rows = rewrites.filter(pl.col("teacher") == name)
        texts[name] = list(zip(rows["turn_id"], rows["rewrite"]))
    return texts


def _shards(texts: list[tuple[str, str]], size: int) -> list[dict[str, str]]:
    """``{turn_id: text}`` per shard: contiguous ranges of the sorted turn ids (so the shards' runs, one after
    the other, are in turn order), each in the rewrites' own order (the order the encoder batches them in)."""
    ids = sorted(t for t, _ in texts)
    shard_of = {t: i for i, (a, b) in enumerate(bounds(len(ids), size)) for t in ids[a:b]}
    out: list[dict[str, str]] = [{} for _ in bounds(len(ids), size)]
    for t, text in texts:
        out[shard_of[t]][t] = text
    return out


@dataclass
class RunStats:
    """What :func:`describe_run` reports, gathered chunk by chunk (each turn's rows lie in one chunk)."""

    rows: int = 0
    with_hits: int = 0
    top1: list[float] = field(default_factory=list)
    rank11: list[float] = field(default_factory=list)
    lo: float | None = None
    hi: float | None = None

    def add(self, run: pl.DataFrame) -> "RunStats":
        if run.height:
            self.rows += run.height
            self.with_hits += run["turn_id"].n_unique()
            self.top1 += run.filter(pl.col("rank") == 1)["score"].to_list()
            self.rank11 += run.filter(pl.col("rank") == 11)["score"].to_list()
            self._extend(float(run["score"].min()), float(run["score"].max()))
        return self

    def _extend(self, *values: float | None) -> None:
        for v in values:
            if v is not None:
                self.lo = v if self.lo is None else min(self.lo, v)
                self.hi = v if self.hi is None else max(self.hi, v)

    def merge(self, other: "RunStats") -> "RunStats":
        self.rows, self.with_hits = self.rows + other.rows, self.with_hits + other.with_hits
        self.top1, self.rank11 = self.top1 + other.top1, self.rank11 + other.rank11
        self._extend(other.lo, other.hi)
        return self

    def describe(self, name: str, queries: int) -> dict:
        return _describe(name, queries, self.with_hits, self.rows, pl.Series(self.top1, dtype=pl.Float64).median(),
                         pl.Series(self.rank11, dtype=pl.Float64).median(), self.lo, self.hi)


def write_teacher_runs(path: str | Path, rewrites: pl.DataFrame, teachers: list[str], encoder: SpladeConfig,
                       lucene: str | Path, k: int, fusion: Fusion, progress: Callable | None = None,
                       shard_turns: int = 100_000, backend: Backend = "auto", chunk: int = CHUNK,
                       fuse_only: list[str] | None = None) -> tuple[int, list[dict]]:
    """Every teacher's run, then ``fused`` (of the ``fuse_only`` teachers; default all), into the Parquet file
    ``path`` (column ``system``; each system's rows sorted by turn, then rank), written through a temporary file
    renamed at the end. Returns the row count and a summary row per run (as :func:`teacher_runs`)."""
    texts = _texts(rewrites, teachers)
    fused_names = _fused_names(teachers, fuse_only)
    path = Path(path)
    parts_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.parts.", suffix=TMP_SUFFIX, dir=path.parent))
    try:
        shards = [(str(lucene), encoder, name, part, k, str(parts_dir / f"{name}-{i:05d}.parquet"), backend, chunk)
                  for name in teachers for i, part in enumerate(_shards(texts[name], shard_turns))]
        if distributed():
            found = pmap(retrieve_shard, shards, "teacher-retrieve")
        else:  # here: one searcher for every shard, a progress bar per teacher
            enc = frozen_encoder(encoder.model)
            searcher, found = open_searcher(lucene, encoder.quant_scale, encoder_tokens(enc), backend=backend), []
            try:
                for name in teachers:
                    n, done = len(texts[name]), 0
                    bar = (progress(f"teacher-{name}-progress".lower(), f"teacher {name}: {n} rewrites", n)
                           if progress else None)
                    for args in (s for s in shards if s[2] == name):
                        found.append(retrieve_shard(*args, searcher=searcher,
                                                    progress=(lambda d, _t, o=done: bar(o + d)) if bar else None))
                        done += len(args[3])
                    if bar:
                        bar.close()
            finally:
                searcher.close()
        stats = {name: RunStats() for name in teachers}
        for args, got in zip(shards, found):
            stats[args[2]].merge(got)
        files = [args[5] for args in shards]
        fused_stats = RunStats()
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, RUNS_FILE, compression="zstd") as writer:
            for f in files:  # every teacher's run, shard after shard: already in turn order
                part = pq.ParquetFile(f)
                for g in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(g).cast(RUNS_FILE))
            n_systems = sum(1 for name, s in stats.items() if s.rows and name in fused_names)
            ids = sorted({t for name in fused_names for t, _ in texts[name]})
            fused_files = [args[5] for args in shards if args[2] in fused_names]
            for a, b in bounds(len(ids), chunk):  # the fused run, `chunk` turns at a time
                part = (pl.scan_parquet(fused_files)
                        .filter(pl.col("turn_id").is_between(pl.lit(ids[a]), pl.lit(ids[b - 1]))).collect())
                fused = fuse(part, fusion, "fused", n_systems=n_systems)
                fused_stats.add(fused)
                writer.write_table(fused.to_arrow().cast(RUNS_FILE))
        summary = [stats[name].describe(name, len(texts[name])) for name in teachers]
        summary.append(fused_stats.describe(f"fused ({fusion}: {'+'.join(fused_names)})", len(ids)))
        return sum(s.rows for s in stats.values()) + fused_stats.rows, summary
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def retrieve_shard(lucene: str, encoder: SpladeConfig, system: str, texts: dict[str, str], k: int, out: str,
                   backend: Backend = "auto", chunk: int = CHUNK, searcher=None,
                   progress: Callable | None = None) -> RunStats:
    """One shard of one teacher: its rewrites (``{turn_id: text}``) through the frozen encoder, top-``k`` each,
    streamed ``chunk`` queries at a time into the Parquet file ``out`` (temporary name, renamed when whole)."""
    enc = frozen_encoder(encoder.model)
    own = searcher is None
    searcher = searcher or open_searcher(lucene, encoder.quant_scale, encoder_tokens(enc), backend=backend)
    stats = RunStats()
    try:
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, RUNS_FILE, compression="zstd") as writer:
            def write(run: pl.DataFrame) -> None:
                stats.add(run)
                writer.write_table(run.to_arrow().cast(RUNS_FILE))

            retrieve(enc, searcher, texts, system=system, k=k, max_length=encoder.query_max_length,
                     batch_size=encoder.batch_size, scale=encoder.quant_scale, progress=progress, chunk=chunk,
                     write=write)
    finally:
        if own:
            searcher.close()
    return stats


def teacher_runs(rewrites: pl.DataFrame, teachers: list[str], encoder: SpladeConfig, lucene: str | Path, k: int,
                 fusion: Fusion, progress: Callable | None = None, shard_turns: int = 100_000,
                 backend: Backend = "auto", fuse_only: list[str] | None = None) -> tuple[pl.DataFrame, list[dict]]:
    """The runs of every teacher plus ``fused`` as one table in memory (the reference for
    :func:`write_teacher_runs`, which gives the same rows in the same order without holding them)."""
    texts = _texts(rewrites, teachers)
    fused_names = _fused_names(teachers, fuse_only)
    enc = frozen_encoder(encoder.model)
    searcher = open_searcher(lucene, encoder.quant_scale, encoder_tokens(enc), backend=backend)
    runs, summary = [], []
    try:
        for name in teachers:
            parts = [retrieve(enc, searcher, part, system=name, k=k, max_length=encoder.query_max_length,
                              batch_size=encoder.batch_size, scale=encoder.quant_scale,
                              chunk=max(len(part), 1)).run for part in _shards(texts[name], shard_turns)]
            run = rank(pl.concat(parts), name) if parts else rank(pl.DataFrame(schema=EMPTY_RUN), name)
            runs.append(run)
            summary.append(describe_run(run, name, len(texts[name])))
    finally:
        searcher.close()
    all_runs = pl.concat(runs)
    fused = fuse(all_runs.filter(pl.col("system").is_in(fused_names)), fusion, "fused")
    ids = {t for name in fused_names for t, _ in texts[name]}
    summary.append(describe_run(fused, f"fused ({fusion}: {'+'.join(fused_names)})", len(ids)))
    return pl.concat([all_runs, fused]), summary


def _fused_names(teachers: list[str], fuse_only: list[str] | None) -> list[str]:
    """The teachers the fused run averages: those of ``fuse_only`` that are computed (``teachers``' order), or all
    of them (no ``fuse_only``, or none of it computed: e.g. ``teacher.systems=["llm"]`` with the demo's
    ``fuse=["human", "llm"]`` fuses the LLM alone)."""
    chosen = [t for t in teachers if fuse_only is None or t in fuse_only]
    return chosen or list(teachers)


def describe_run(run: pl.DataFrame, name: str, queries: int) -> dict:
    """Hits and score distribution of one run (top-1 and rank-11 medians: how peaked the teacher is)."""
    return _describe(name, queries, run["turn_id"].n_unique(), len(run),
                     run.filter(pl.col("rank") == 1)["score"].median(),
                     run.filter(pl.col("rank") == 11)["score"].median(), run["score"].min(), run["score"].max())


def _describe(name, queries, with_hits, rows, top1, r11, lo, hi) -> dict:
    return {
        "teacher": name,
        "queries": queries,
        "queries_with_hits": with_hits,
        "hits_per_query": round(rows / max(with_hits, 1), 1),
        "top1_score_median": round(float(top1 or 0), 3),
        "rank11_score_median": round(float(r11 or 0), 3),
        "score_min": round(float(lo or 0), 3),
        "score_max": round(float(hi or 0), 3),
    }
