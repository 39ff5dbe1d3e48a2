"""Per-turn reuse of teacher runs, by content: a dataset that grows is scored for its new turns only.

A teacher's run for one turn depends on the text the frozen encoder reads (the teacher's rewrite), the encoder's
settings, ``k`` and the corpus the index holds, nothing else. :class:`RunCache` keeps the ranked passages of every
query text ever searched under those settings, keyed by the text's SHA-256, in
``<run folder>/cache/turns/teacher-<settings key>/part-*.parquet`` (outside any stage folder, so a new teacher
stage key, e.g. for a dataset with more conversations, still finds them; each part written atomically, so a
killed run loses at most the part it was writing). :func:`cached_teacher_runs` searches the texts the cache does
not hold yet, adds them, then writes the teacher stage's ``runs.parquet`` from the cache: every teacher's run
(rows sorted by turn, then rank) and the fused run, ``chunk`` turns at a time, as
:func:`retrieval.teachers.write_teacher_runs` computes them, row for row in the same order (``shard_turns``: the
same shard layout; tests/retrieval/test_turn_cache.py compares the two).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from core.io import TMP_SUFFIX, atomic_path, sha256_text
from core.parallel import bounds
from models.splade_config import SpladeConfig
from retrieval.index.retrieve import CHUNK
from retrieval.index.sparse import Backend
from retrieval.runs import Fusion, fuse
from retrieval.teachers import RUNS_FILE, RunStats, _fused_names, _texts, retrieve_shard

PART = pa.schema([("text_hash", pa.string()), ("doc_id", pa.string()), ("score", pa.float64()),
                  ("rank", pa.int32())])


def text_hash(text: str) -> str:
    return sha256_text(text)[:32]


class RunCache:
    """Ranked passages by query text (its :func:`text_hash`) for one setting of encoder, ``k`` and corpus; a text
    searched without hits is kept as one row with a null ``doc_id`` (searched, nothing found)."""

    def __init__(self, root: str | Path, settings: dict):
        key = sha256_text(json.dumps(settings, sort_keys=True, default=str))[:16]
        self.dir = Path(root) / f"teacher-{key}"

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.is_dir() else []

    def known(self) -> set[str]:
        """The hashes of the texts searched so far."""
        parts = self.parts()
        if not parts:
            return set()
        return set(pl.scan_parquet(parts).select(pl.col("text_hash").unique()).collect()["text_hash"])

    def add(self, run: pl.DataFrame, searched: list[str]) -> None:
        """One new part: ``run``'s rows (``turn_id`` = text hash) and an empty row for each text of ``searched``
        that found nothing."""
        rows = run.select(pl.col("turn_id").alias("text_hash"), "doc_id", "score", pl.col("rank").cast(pl.Int32))
        empty = sorted(set(searched) - set(rows["text_hash"]))
        if empty:
            rows = pl.concat([rows, pl.DataFrame({"text_hash": empty}, schema={"text_hash": pl.String}).with_columns(
                pl.lit(None, pl.String).alias("doc_id"), pl.lit(None, pl.Float64).alias("score"),
                pl.lit(None, pl.Int32).alias("rank"))])
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / f"part-{uuid.uuid4().hex}.parquet") as tmp:
            pq.write_table(rows.to_arrow().cast(PART), tmp, compression="zstd")

    def rows(self, hashes: list[str]) -> pl.DataFrame:
        """The cached hits of these texts (null rows left out)."""
        return (pl.scan_parquet(self.parts()).filter(pl.col("text_hash").is_in(hashes) & pl.col("doc_id").is_not_null())
                .collect())


def cached_teacher_runs(path: str | Path, rewrites: pl.DataFrame, teachers: list[str], encoder: SpladeConfig,
                        lucene: str | Path, corpus_sha256: str, k: int, fusion: Fusion, cache_root: str | Path,
                        progress: Callable | None = None, backend: Backend = "auto", chunk: int = CHUNK,
                        fuse_only: list[str] | None = None, shard_turns: int = 100_000
                        ) -> tuple[int, list[dict], dict]:
    """The teacher stage's ``runs.parquet`` at ``path`` with the texts searched before reused (see the module
    docstring). Returns the row count, a summary row per run (as :func:`retrieval.teachers.write_teacher_runs`)
    and the counts of reuse: ``computed_turns`` / ``reused_turns`` ((teacher, turn) queries whose text was
    searched now / found in the cache) and ``searched_texts`` (distinct texts searched now)."""
    texts = _texts(rewrites, teachers)
    fused_names = _fused_names(teachers, fuse_only)
    cache = RunCache(cache_root, {"encoder": encoder.model_dump(mode="json"), "k": k, "corpus": corpus_sha256})
    hashed = {name: [(t, text_hash(x)) for t, x in pairs] for name, pairs in texts.items()}
    by_hash = {h: x for name, pairs in texts.items() for (_, x), (_, h) in zip(pairs, hashed[name])}
    known = cache.known()
    missing = sorted(set(by_hash) - known)
    computed = sum(h not in known for pairs in hashed.values() for _, h in pairs)
    if missing:
        bar = progress("teacher-progress", f"teacher: searching {len(missing)} new query texts "
                       f"({len(by_hash) - len(missing)} reused)", len(missing)) if progress else None
        cache.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".searching.", suffix=TMP_SUFFIX, dir=cache.dir))
        try:
            retrieve_shard(str(lucene), encoder, "cache", {h: by_hash[h] for h in missing}, k,
                           str(tmp / "run.parquet"), backend, chunk, progress=(lambda d, _t: bar(d)) if bar else None)
            cache.add(pl.read_parquet(tmp / "run.parquet"), missing)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if bar:
            bar.close()
    stats = {name: RunStats() for name in teachers}
    fused_stats = RunStats()
    path = Path(path)
    parts_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.parts.", suffix=TMP_SUFFIX, dir=path.parent))
    try:
        files = {}
        for name in teachers:  # each teacher's run in write_teacher_runs' order: shard after shard, rewrites' order
            ordered = _in_shard_order(hashed[name], shard_turns)
            files[name] = parts_dir / f"{len(files):03d}.parquet"
            with pq.ParquetWriter(files[name], RUNS_FILE, compression="zstd") as writer:
                for a, b in bounds(len(ordered), chunk):
                    part = _joined(cache, ordered[a:b], name)
                    stats[name].add(part)
                    writer.write_table(part.to_arrow().cast(RUNS_FILE))
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, RUNS_FILE, compression="zstd") as writer:
            for f in files.values():
                part = pq.ParquetFile(f)
                for g in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(g).cast(RUNS_FILE))
            n_systems = sum(1 for name, st in stats.items() if st.rows and name in fused_names)
            ids = sorted({t for name in fused_names for t, _ in hashed[name]})
            fused_files = [files[name] for name in teachers if name in fused_names]
            for a, b in bounds(len(ids), chunk):  # the fused run, `chunk` turns at a time, as write_teacher_runs
                part = (pl.scan_parquet(fused_files)
                        .filter(pl.col("turn_id").is_between(pl.lit(ids[a]), pl.lit(ids[b - 1]))).collect())
                fused = fuse(part, fusion, "fused", n_systems=n_systems)
                fused_stats.add(fused)
                writer.write_table(fused.to_arrow().cast(RUNS_FILE))
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    summary = [stats[name].describe(name, len(texts[name])) for name in teachers]
    summary.append(fused_stats.describe(f"fused ({fusion}: {'+'.join(fused_names)})", len(ids)))
    total = sum(len(p) for p in hashed.values())
    reuse = {"computed_turns": computed, "reused_turns": total - computed, "searched_texts": len(missing)}
    return sum(s.rows for s in stats.values()) + fused_stats.rows, summary, reuse


def _in_shard_order(pairs: list[tuple[str, str]], shard_turns: int) -> list[tuple[str, str]]:
    """``pairs`` in the order write_teacher_runs writes a teacher's run: contiguous shards of the sorted turn ids,
    each in the rewrites' own order."""
    ids = sorted(t for t, _ in pairs)
    shard_of = {t: i for i, (a, b) in enumerate(bounds(len(ids), shard_turns)) for t in ids[a:b]}
    position = {t: i for i, (t, _) in enumerate(pairs)}
    return sorted(pairs, key=lambda p: (shard_of[p[0]], position[p[0]]))


def _joined(cache: RunCache, pairs: list[tuple[str, str]], system: str) -> pl.DataFrame:
    """The cached hits of ``pairs`` ((turn id, text hash)) as a run of ``system``, in the order of ``pairs``, each
    turn's hits by rank."""
    ids = pl.DataFrame(pairs, schema={"turn_id": pl.String, "text_hash": pl.String}, orient="row").with_row_index("o")
    hits = cache.rows(ids["text_hash"].unique().to_list()) if len(ids) else pl.DataFrame(schema=PART)
    return (ids.join(hits, on="text_hash").sort(["o", "rank"]).with_columns(pl.lit(system).alias("system"))
            .select("turn_id", "doc_id", "system", "score", pl.col("rank").cast(pl.Int32)))
