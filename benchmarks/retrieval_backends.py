"""Exact impact search: Pyserini's Lucene impact searcher (batched, threaded) against the scipy sparse-matrix
searcher (retrieval/index/sparse.py) on the same quantised vectors, at several corpus sizes (issue 12).

Corpora are synthesised from SPLADE-tiny's own passage vectors (the demo passages, or MTRAG-UN's with ``--data``):
passage ``i`` keeps the terms of real passage ``i mod n`` with weights scaled by U(0.8, 1.2) plus a random third of
another real passage's terms, so sizes, term distributions and ties resemble real output. Queries are the frozen
encoder's vectors of real questions (the teacher stage's case: k=1000). Both backends get every query in one batch;
first the hits are compared (top-10 and top-k lists, ids and scores), then timed. The index build time is
reported for context.

    .venv/bin/python -m benchmarks.retrieval_backends [--sizes 1000,10000,100000] [--queries 200] [--k 1000]

1M passages: about 2 GB for the matrix and, at the ~170-550 passages/s measured for indexing here (loaded / idle), 30
to 100 minutes of Anserini on two cores; ``--lucene-max 100000`` times the larger sizes with the sparse searcher only
(Lucene's time per query barely grows with the corpus at k=1000, so its time at the largest indexed size bounds it
from below).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT

DEMO = ROOT / "data" / "demo"


def real_vectors(enc, data: Path | None, limit: int):
    """(passage vectors, question texts) from the demo data or an MTRAG-UN folder."""
    if data is not None and data.exists():
        from retrieval.datasets import get_reader

        reader = get_reader("mtrag-un", data)
        passages = [p.text for _, p in zip(range(limit), reader.passages())]
        questions = [t.question for t in reader.turns()]
    else:
        passages = [json.loads(x)["text"] for x in (DEMO / "passages.jsonl").read_text().splitlines()][:limit]
        questions = [t["question"] for x in (DEMO / "conversations.jsonl").read_text().splitlines()
                     for t in json.loads(x)["turns"]]
    return enc.encode(passages, 256), questions


def synthesise(real, n: int, seed: int = 0, start: int = 0, stop: int | None = None):
    """Passage vectors ``start..stop`` (term ids, float weights) of an ``n``-passage corpus built from the real
    ones (the same vectors whichever blocks they are made in: each passage has its own random stream)."""
    out = []
    for i in range(start, n if stop is None else stop):
        rng = np.random.default_rng((seed, i))
        ids, w = real[i % len(real)]
        oid, ow = real[rng.integers(len(real))]
        extra = rng.random(len(oid)) < 1 / 3
        t = np.concatenate([ids, oid[extra]])
        x = np.concatenate([w * rng.uniform(0.8, 1.2, len(w)), ow[extra] * rng.uniform(0.5, 1.0, extra.sum())])
        t, first = np.unique(t, return_index=True)
        out.append((t.astype(np.int32), x[first].astype(np.float32)))
    return out


BLOCK = 50_000  # passages synthesised and written at a time (1M passages never sit in memory at once)


def write_corpus(real, n: int, tokens, root: Path, with_lucene: bool = True) -> float:
    """doc_vectors.parquet + collection/ + lucene/ (unless not ``with_lucene``) under ``root``, written block by
    block; return the indexing seconds."""
    import pyarrow.parquet as pq

    from core import schema
    from retrieval.index.build import build_index
    from retrieval.index.encode import vectors_table
    from retrieval.index.shards import shard_name, write_shard

    shutil.rmtree(root, ignore_errors=True)
    (root / "collection").mkdir(parents=True)
    with pq.ParquetWriter(root / "doc_vectors.parquet", schema.DOC_VECTORS) as writer:
        for b, start in enumerate(range(0, n, BLOCK)):
            vecs = synthesise(real, n, start=start, stop=min(start + BLOCK, n))
            ids = [f"p{i}" for i in range(start, start + len(vecs))]
            if with_lucene:
                write_shard(root / "collection" / shard_name(b), ids, vecs, tokens, 100)
            writer.write_table(vectors_table(ids, vecs))
    if not with_lucene:
        return float("nan")
    t0 = time.perf_counter()
    build_index(root / "collection", root / "lucene", threads=2)
    return time.perf_counter() - t0


def agreement(want: dict, got: dict, k: int) -> dict:
    """Share of queries whose top-10 / top-k lists are identical: ids and order, scores as the stages store them
    (Lucene's float32 sums rounded to the exact integers, see retrieval/index/retrieve.py), and ids, order and
    raw scores (Lucene's one-ulp differences count as differences there)."""
    exact = {q: [(d, float(round(s))) for d, s in h] for q, h in want.items()}
    return {"top10_identical": float(np.mean([exact[q][:10] == got[q][:10] for q in want])),
            f"top{k}_identical": float(np.mean([exact[q] == got[q] for q in want])),
            f"top{k}_identical_raw_scores": float(np.mean([want[q] == got[q] for q in want]))}


def time_search(searcher, queries: dict, k: int) -> float:
    """Milliseconds per query, best of 2 batches of every query."""
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        searcher.search(queries, k)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / len(queries)


def bench_size(n: int, real, queries: dict, tokens, k: int, work: Path, with_lucene: bool = True) -> dict:
    """One corpus size: both searchers, hits compared first, then timed. Without Lucene (a size too large to
    index here in the time at hand) only the sparse searcher is built and timed."""
    from benchmarks.common import PeakRSS
    from retrieval.index.search import ImpactSearcher
    from retrieval.index.sparse import SparseSearcher, stored_impacts

    root = work / f"n{n}"
    index_s = write_corpus(real, n, tokens, root, with_lucene)
    row = {"passages": n, "index_build_s": index_s, "impacts": stored_impacts(root / "doc_vectors.parquet")}
    lucene = None
    if with_lucene:
        t0 = time.perf_counter()
        lucene = ImpactSearcher(root / "lucene", threads=2)
        row["lucene_open_s"] = time.perf_counter() - t0
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fast = SparseSearcher(root / "doc_vectors.parquet", 100, tokens)
        row["sparse_open_s"] = time.perf_counter() - t0
    row["sparse_matrix_mib"] = (fast.matrix.data.nbytes + fast.matrix.indices.nbytes) / 2**20
    row["sparse_load_peak_extra_mib"] = mem.extra_mib
    row["sparse_build_bytes_per_impact"] = mem.extra_mib * 2**20 / row["impacts"]
    got = fast.search(queries, k)  # also the warm-up
    if lucene is not None:
        row.update(agreement(lucene.search(queries, k), got, k))
        if row[f"top{k}_identical"] < 1.0:
            raise SystemExit(f"{n} passages: the searchers disagree ({row}); not timing")
        row["lucene_ms_per_query"] = time_search(lucene, queries, k)
        lucene.close()
    with PeakRSS() as mem:
        row["sparse_ms_per_query"] = time_search(fast, queries, k)
    row["sparse_search_peak_extra_mib"] = mem.extra_mib
    if lucene is not None:
        row["sparse_speedup"] = row["lucene_ms_per_query"] / row["sparse_ms_per_query"]
    del fast
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    k = meta["k"]
    lines = [f"{meta['queries']} queries (SPLADE-tiny vectors of real questions, {meta['query_terms']:.0f} terms on "
             f"average), k={k}, corpora synthesised from {meta['real']} real passage vectors "
             f"({meta['doc_terms']:.0f} terms on average); Lucene: Pyserini LuceneImpactSearcher.batch_search, "
             f"2 threads; {meta['machine']['cpu']}, {meta['machine']['cores']} cores, load average "
             f"{meta['machine']['load_avg_1m']:.1f}.", "",
             f"| passages | Lucene ms/query | sparse ms/query | sparse speed-up | identical top-10 | identical top-{k} "
             "| matrix MiB | sparse load s | Lucene index build s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "lucene_ms_per_query" in r:
            lines.append(f"| {r['passages']:,} | {r['lucene_ms_per_query']:.2f} | {r['sparse_ms_per_query']:.2f} | "
                         f"{r['sparse_speedup']:.1f}x | {r['top10_identical']:.1%} | {r[f'top{k}_identical']:.1%} | "
                         f"{r['sparse_matrix_mib']:.0f} | {r['sparse_open_s']:.1f} | {r['index_build_s']:.0f} |")
        else:
            lines.append(f"| {r['passages']:,} | not indexed | {r['sparse_ms_per_query']:.2f} | - | - | - | "
                         f"{r['sparse_matrix_mib']:.0f} | {r['sparse_open_s']:.1f} | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--lucene-max", type=int, default=1_000_000,
                        help="sizes above this are searched with the sparse searcher only (no Lucene index)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=None, help="an MTRAG-UN folder (default: the demo data)")
    parser.add_argument("--real", type=int, default=400, help="real passages to synthesise from")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-retrieval"))
    args = parser.parse_args()

    from core.io import write_json, write_text
    from benchmarks.common import describe
    from models.splade import SpladeEncoder, impact_vector, vocab_tokens

    enc = SpladeEncoder("splade-tiny", frozen=True)
    tokens = vocab_tokens(enc.tokenizer)
    real, questions = real_vectors(enc, args.data, args.real)
    qvecs = enc.encode(questions[: args.queries], 256)
    queries = {f"q{i}": impact_vector(t, w, tokens) for i, (t, w) in enumerate(qvecs)}
    queries = {q: v for q, v in queries.items() if v}
    rows = [bench_size(int(n), real, queries, tokens, args.k, args.out / "work", int(n) <= args.lucene_max)
            for n in args.sizes.split(",")]
    meta = {"k": args.k, "queries": len(queries), "real": len(real), "machine": describe(),
            "query_terms": float(np.mean([len(v) for v in queries.values()])),
            "doc_terms": float(np.mean([len(t) for t, _ in real]))}
    md = markdown(rows, meta)
    print(md)
    write_text(args.out / "retrieval_backends.md", md)
    write_json(args.out / "retrieval_backends.json", {"rows": rows, "meta": meta})


if __name__ == "__main__":
    main()
