"""Torch threads for the searcher's encoding, idle and beside busy neighbours: the measurement behind
``disco serve --threads`` / ``--batch-threads`` (issue 28, item 2).

In one process, with the run's searcher (encode only: the student's forward pass and quantisation, as the
service's worker thread runs it), for 1 and 2 torch threads: one conversation at a time (latency p50 / p95 ms)
and batches of 16 (ms per conversation), first idle and then beside neighbours this script starts and stops
(benchmarks/neighbours.py: by default two processes each running a 2-thread torch matmul loop). The vectors are
checked equal across settings before anything is timed.

    .venv/bin/python -m benchmarks.serve_threads --run-dir runs/demo --out runs/bench-serve-threads
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def conversations(run_dir: Path) -> list[list[dict]]:
    import polars as pl

    from core.run_record import RunRecord

    turns = pl.read_parquet(RunRecord.read(run_dir).output("ingest", "turns")).to_dicts()
    return [[{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
            + [{"speaker": "user", "text": t["question"]}] for t in turns]


def time_encode(searcher, texts: list[str], batch: int, seconds: float) -> list[float]:
    """Milliseconds per conversation for each call of ``batch`` texts, for about ``seconds``."""
    out, i, end = [], 0, time.monotonic() + seconds
    while time.monotonic() < end:
        part = [texts[(i + j) % len(texts)] for j in range(batch)]
        t0 = time.perf_counter()
        searcher.query_vectors(part)
        out.append(1000 * (time.perf_counter() - t0) / batch)
        i += batch
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-serve-threads"))
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--neighbours", default="torch", choices=["torch", "python"])
    args = parser.parse_args()

    import torch

    from core.io import write_json, write_text
    from disco.serving.search import Searcher
    from benchmarks.neighbours import Neighbours

    searcher = Searcher.open(args.run_dir)
    texts = [searcher.text(c) for c in conversations(args.run_dir)]
    torch.set_num_threads(1)
    want = searcher.query_vectors(texts[:32])
    torch.set_num_threads(2)
    assert searcher.query_vectors(texts[:32]) == want, "2 threads give other vectors"
    assert [searcher.query_vectors([t])[0] for t in texts[:32]] == want, "one at a time gives other vectors"

    neighbours = Neighbours(args.neighbours, 2, 2)
    load = {"before": os.getloadavg()[0], "neighbours": neighbours.describe()}
    rows = []
    for phase in ("idle", "busy"):
        if phase == "busy":
            neighbours.start()
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                time_encode(searcher, texts, 1, 1.0)  # warm-up
                for batch in (1, 16):
                    ms = np.asarray(time_encode(searcher, texts, batch, args.seconds))
                    rows.append({"phase": phase, "threads": threads, "batch": batch, "calls": len(ms),
                                 "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))})
                    print(rows[-1], flush=True)
        finally:
            neighbours.stop()
    searcher.close()
    load["after"] = os.getloadavg()[0]
    base = {(r["batch"]): r["p50"] for r in rows if r["phase"] == "idle" and r["threads"] == 1}
    lines = [f"load average (1 min) before {load['before']:.2f}, after {load['after']:.2f}; busy: "
             f"{load['neighbours']}", "",
             "| phase | torch threads | batch | calls | p50 ms / conversation | p95 | p50 vs idle 1 thread |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['phase']} | {r['threads']} | {r['batch']} | {r['calls']} | {r['p50']:.2f} | {r['p95']:.2f} | "
              f"{r['p50'] / base[r['batch']]:.2f}x |" for r in rows]
    md = "\n".join(lines) + "\n"
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "serve_threads.md", md)
    write_json(args.out / "serve_threads.json", {"rows": rows, "load": load})


if __name__ == "__main__":
    main()
