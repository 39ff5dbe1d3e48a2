"""Corpus-encoding throughput on a local Ray cluster of 1 and 2 workers, against the single-process run measured
in the same invocation (docs/scaling.md holds a measurement and the plan for a 20M-passage corpus).

The corpus is the embedded demo's passages repeated to ``--passages`` (ids made unique); it is encoded with the
index stage's own code (:func:`retrieval.index.encode.encode_corpus`) in shards of ``--shard-size``: once here
(no mapper: the baseline), then with each shard a Ray task (:func:`core.parallel.pmap` through a Ray mapper, as
``--runner ray`` does through Prefect's RayTaskRunner) on a fresh local cluster of ``num_cpus`` = 1, then 2.
Each variant must produce the same ``doc_vectors.parquet`` as the baseline (checked). Also reported: the peak
RSS of the driver and the size of the vector files per passage, for the memory plan.

    .venv/bin/python -m benchmarks.ray_scaling --passages 2000 --shard-size 250 --out runs/bench-ray
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.parallel import using
from core.paths import DEMO_DATA, ROOT
from models.splade import SpladeConfig
from retrieval.index.encode import encode_corpus


def make_corpus(path: Path, passages: int) -> Path:
    """The demo's passages repeated to ``passages`` rows (doc_id, title, text), written as Parquet."""
    base = [json.loads(x) for x in (DEMO_DATA / "passages.jsonl").read_text().splitlines()]
    rows = [base[i % len(base)] for i in range(passages)]
    table = pa.table({"doc_id": [f"{r['id']}-{i}" for i, r in enumerate(rows)],
                      "title": [r.get("title") or "" for r in rows], "text": [r["text"] for r in rows]})
    pq.write_table(table, path)
    return path


def ray_mapper():
    import ray

    def mapper(fn, items, name):
        remote = ray.remote(num_cpus=1)(fn)
        return ray.get([remote.remote(*args) for args in items])

    return mapper


def measure(corpus: Path, encoder: SpladeConfig, out: Path, shard_size: int, workers: int | None) -> dict:
    """One variant: ``workers`` None = here, one process; else a fresh local Ray cluster of that many CPUs."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if workers is None:
        t0 = time.perf_counter()
        stats = encode_corpus(corpus, encoder, out, shard_size)
        return {"variant": "single process", "seconds": time.perf_counter() - t0, **stats}
    import ray

    env = {"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    t_start = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, runtime_env={"env_vars": env})
    started = time.perf_counter() - t_start
    try:
        mapper = ray_mapper()
        mapper(lambda: 0, [()] * workers, "warm-up")  # start the workers before the clock
        t0 = time.perf_counter()
        with using(mapper):
            stats = encode_corpus(corpus, encoder, out, shard_size)
        return {"variant": f"ray, {workers} worker(s)", "seconds": time.perf_counter() - t0,
                "cluster_start_s": round(started, 1), **stats}
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-ray"))
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(args.out / "corpus.parquet", args.passages)
    encoder = SpladeConfig()
    rows = [measure(corpus, encoder, args.out / "single", args.shard_size, None)]
    baseline = pq.read_table(args.out / "single" / "doc_vectors.parquet")
    for w in args.workers:
        r = measure(corpus, encoder, args.out / f"ray-{w}", args.shard_size, w)
        r["identical_vectors"] = pq.read_table(args.out / f"ray-{w}" / "doc_vectors.parquet").equals(baseline)
        rows.append(r)
    vec_bytes = (args.out / "single" / "doc_vectors.parquet").stat().st_size
    col_bytes = sum(f.stat().st_size for f in (args.out / "single" / "collection").iterdir())
    base_s = rows[0]["seconds"]
    print(f"{args.passages} passages, shards of {args.shard_size}, {os.cpu_count()} CPUs on this machine")
    print(f"{'variant':22s} {'seconds':>8s} {'passages/s':>10s} {'vs single':>9s}  identical")
    for r in rows:
        print(f"{r['variant']:22s} {r['seconds']:8.1f} {args.passages / r['seconds']:10.1f} "
              f"{base_s / r['seconds']:8.2f}x  {r.get('identical_vectors', '-')}")
    per_million = {"doc_vectors_gib": vec_bytes / args.passages * 1e6 / 2**30,
                   "collection_gib": col_bytes / args.passages * 1e6 / 2**30,
                   "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("per million passages: " + ", ".join(f"{k} {v:.2f}" for k, v in per_million.items()))
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "per_million": per_million}, indent=2,
                                                      default=str))


if __name__ == "__main__":
    main()
