"""Peak memory of the teacher stage's retrieval (issue 11, part 6): streamed in chunks to Parquet
(``retrieval.teachers.write_teacher_runs``, what the stage runs) against the old in-memory path
(``retrieval.teachers.teacher_runs`` + one Parquet write), at several numbers of turns, k=1000.

Setup, said plainly: encoding 100k queries on 2 shared cores takes long, so the query vectors are synthesised:
the demo's distinct questions (196) go through SPLADE-tiny once, and turn ``i`` gets the vector of text
``i mod n`` (the encoder is replaced in the child process by one that replays these vectors; the searching,
ranking, writing and fusion are the real code). The corpus is synthesised from SPLADE-tiny's demo passage vectors
(benchmarks/retrieval_backends.py: ``--passages``, default 3,000, so every query has at least k=1000 hits) and
searched with the sparse searcher. One teacher; the fused run is computed and written as in the stage.

Each variant runs in its own process; its peak resident memory is ``wait4``'s ``ru_maxrss``. A ``fixed`` process
only imports, loads the vectors and builds the searcher: the part both variants share. Reported: each peak, the
part above ``fixed``, rows written and seconds.

    .venv/bin/python -m benchmarks.teacher_memory --turns 1000,10000,100000 --unchunked 1000,10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT


def prepare(out: Path, passages: int) -> None:
    """``corpus/doc_vectors.parquet`` (synthesised) and ``queries.parquet`` (SPLADE-tiny vectors of real texts)."""
    import pyarrow.parquet as pq

    from models.splade import SpladeEncoder
    from retrieval.index.encode import vectors_table
    from retrieval_backends import real_vectors, synthesise

    if (out / "queries.parquet").exists():
        return
    enc = SpladeEncoder("splade-tiny", frozen=True)
    real, questions = real_vectors(enc, None, 400)
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    vecs = synthesise(real, passages)
    pq.write_table(vectors_table([f"p{i}" for i in range(passages)], vecs), out / "corpus" / "doc_vectors.parquet")
    texts = sorted(set(questions))
    qv = enc.encode(texts, 256)
    pq.write_table(vectors_table([str(i) for i in range(len(qv))], qv), out / "queries.parquet")


class Replay:
    """Stands in for the frozen encoder: text ``"<i>"`` -> the stored vector ``i mod n`` (real SPLADE-tiny
    vectors of real questions); the tokenizer is SPLADE-tiny's."""

    def __init__(self, path: Path):
        import numpy as np
        import pyarrow.parquet as pq

        from models.splade import SpladeEncoder

        t = pq.read_table(path)
        self.vecs = [(np.asarray(a, np.int32), np.asarray(b, np.float32))
                     for a, b in zip(t.column("term_ids").to_pylist(), t.column("weights").to_pylist())]
        self.tokenizer = SpladeEncoder("splade-tiny", frozen=True).tokenizer

    def encode(self, texts, max_length, batch_size=32, progress=None, truncation_side="right"):
        return [self.vecs[int(x) % len(self.vecs)] for x in texts]


def child(out: Path, variant: str, turns: int, k: int) -> None:
    import polars as pl

    import retrieval.teachers as teachers
    from core.io import write_parquet
    from models.splade import SpladeConfig
    from retrieval.index.retrieve import encoder_tokens
    from retrieval.index.sparse import open_searcher

    replay = Replay(out / "queries.parquet")
    teachers.frozen_encoder = lambda model: replay  # synthesised query vectors (see the module docstring)
    rewrites = pl.DataFrame({"turn_id": [f"t{i:06d}" for i in range(turns)], "teacher": "human",
                             "rewrite": [str(i) for i in range(turns)], "prompt_hash": "synthetic"})
    lucene = out / "corpus" / "lucene"  # not built: the sparse searcher reads doc_vectors.parquet beside it
    cfg = SpladeConfig()
    t0 = time.perf_counter()
    if variant == "fixed":
        open_searcher(lucene, 100, encoder_tokens(replay), backend="sparse").close()
        rows = 0
    elif variant == "streamed":
        rows, _ = teachers.write_teacher_runs(out / f"runs-{variant}-{turns}.parquet", rewrites, ["human"], cfg,
                                              lucene, k, "mean_score", backend="sparse")
    else:
        runs, _ = teachers.teacher_runs(rewrites, ["human"], cfg, lucene, k, "mean_score", backend="sparse")
        write_parquet(out / f"runs-{variant}-{turns}.parquet", runs.to_arrow())
        rows = runs.height
    print(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}))


def measure(out: Path, variant: str, turns: int, k: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.teacher_memory", "--child", variant, "--out", str(out), "--turns",
           str(turns), "--k", str(k)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{variant} at {turns} turns failed")
    row = {"variant": variant, "turns": turns, **json.loads(stdout.strip().splitlines()[-1]),
           "peak_mib": round(usage.ru_maxrss / 1024, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-teacher-memory"))
    ap.add_argument("--turns", default="1000,10000,100000", help="streamed runs")
    ap.add_argument("--unchunked", default="1000,10000", help="in-memory runs (100k x k=1000 needs ~10+ GiB)")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--passages", type=int, default=3000)
    ap.add_argument("--child", choices=["fixed", "streamed", "unchunked"])
    args = ap.parse_args()
    if args.child:
        return child(args.out, args.child, int(args.turns), args.k)
    from core.io import write_json
    from benchmarks.common import describe

    args.out.mkdir(parents=True, exist_ok=True)
    prepare(args.out, args.passages)
    machine = describe()
    fixed = measure(args.out, "fixed", 1, args.k)
    rows = [fixed]
    for n in (int(x) for x in args.turns.split(",") if x):
        rows.append(measure(args.out, "streamed", n, args.k))
    for n in (int(x) for x in args.unchunked.split(",") if x):
        rows.append(measure(args.out, "unchunked", n, args.k))
    for r in rows:
        r["above_fixed_mib"] = round(r["peak_mib"] - fixed["peak_mib"], 1)
    for p in args.out.glob("runs-*.parquet"):
        p.unlink()
    lines = [f"k={args.k}, one teacher + fused, {args.passages} synthesised passages (sparse searcher), query vectors "
             f"replayed (see benchmarks/teacher_memory.py); {machine['cpu']}, {machine['cores']} cores, load average "
             f"{machine['load_avg_1m']:.1f} at the start.", "",
             "| path | turns | rows written | peak RSS MiB | above fixed MiB | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['turns']:,} | {r['rows']:,} | {r['peak_mib']:.0f} | "
                     f"{r['above_fixed_mib']:.0f} | {r['seconds']} |")
    md = "\n".join(lines) + "\n"
    print(md)
    (args.out / "teacher_memory.md").write_text(md)
    write_json(args.out / "teacher_memory.json", {"rows": rows, "machine": machine, "k": args.k})


if __name__ == "__main__":
    main()
