"""Peak memory of each stage, on the demo and on a synthetic 100,000-passage corpus (issue 12, part 6).

Every measurement is one fresh process (this script with ``--inner``); its peak resident memory is the kernel's
``ru_maxrss`` from ``os.wait4`` (the process and the children it waited for, e.g. Lucene's indexing JVM, whichever
peaked higher). The peak of a process that only imports the same modules is given beside it.

1. **demo**: the plan of ``disco run demo`` without Prefect (:func:`stages.base.run_stage`), one process per
   stage, on a fresh folder, with ``teacher.systems=["human"]`` and ``distill.steps=20`` (no LLM: minutes, not an
   hour, on 2 cores).
2. **100k**: a native dataset of the demo's conversations and qrels with 100,000 passages (the demo's 278 texts,
   each copy numbered); the ingest stage on it; then the index stage's writing path on it
   (:func:`retrieval.index.shards.encode_shards` into one 100,000-passage shard, the default ``index.shard_size``,
   with ``doc_vectors.parquet`` written as the stage does, then the Lucene impact index, built once) with **synthesised
   vectors**: the demo's real SPLADE-tiny passage vectors replayed in turn (encoding 100,000 passages takes hours
   on 2 shared cores), once with the chunked encoding (``ENCODE_CHUNK`` passages at a time) and once with a chunk
   of the whole shard (what the stage did before); and real encoding of a ``--encode-slice`` passage slice.
   Then the rest of the pipeline on that corpus, one process per stage, with the demo's settings above: rewrite,
   teacher (searching the 100,000 synthesised vectors: ``teacher.searcher=auto`` picks the exact sparse matrix),
   distill (its examples and dev set read the passages' vectors) and evaluate (the student and the baselines
   searched on the same index). Their index is the chunked writing path's folder, handed to them as the index
   stage's manifest (:func:`index_manifest`).

    .venv/bin/python -m benchmarks.stage_memory [--passages 100000] [--encode-slice 1000] [--out runs/bench-memory]
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

DEMO_SETTINGS = ['teacher.systems=["human"]', "distill.learn_from=human", "distill.steps=20"]
IMPORTS = "import stages.graph, stages.runner, retrieval.index.build, retrieval.index.shards"


def measure(args: list[str]) -> dict:
    """Run ``stage_memory.py --inner ARGS`` in a fresh process: its JSON result, peak RSS (MiB) and wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.stage_memory", "--inner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{args}: exit status {status}\n{out}")
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------------------------- inner processes
def inner_demo_stage(name: str, out: str) -> dict:
    from stages.base import run_stage
    from stages.config import load
    from stages.graph import plan

    cfg = load("demo", None, [*DEMO_SETTINGS])
    done: dict = {}
    for step in plan(cfg):
        upstream = {u: done[n] if isinstance(n, str) else [done[x] for x in n] for u, n in step.upstream.items()}
        done[step.name] = run_stage(step.stage, step.fields, upstream, out)
        if step.name == name:
            return {"stage": name, "dir": done[name].dir}
    raise SystemExit(f"no stage {name}")


def inner_ingest(data: str, out: str) -> dict:
    from stages.base import run_stage
    from stages.config import load
    from stages.graph import plan

    cfg = load("demo", [data], [])
    step = plan(cfg, "ingest")[0]
    m = run_stage(step.stage, step.fields, {}, out)
    return {"stage": "ingest", "corpus": str(m["corpus"])}


class ReplayEncoder:
    """Synthesised passage vectors for the 100k writing path: the demo's real SPLADE-tiny vectors, replayed in turn
    (a benchmark stand-in for encoding, said so in its results; the tokenizer is the real one)."""

    def __init__(self, doc_vectors: str):
        import pyarrow.parquet as pq
        from transformers import AutoTokenizer

        from models.weights import resolve
        from retrieval.index.encode import table_vectors

        self.vectors = table_vectors(pq.read_table(doc_vectors))
        self.tokenizer = AutoTokenizer.from_pretrained(resolve("splade-tiny").path)
        self.calls = 0

    def encode(self, texts, max_length, batch_size=32, progress=None):
        out = [self.vectors[(self.calls + i) % len(self.vectors)] for i in range(len(texts))]
        self.calls += len(texts)
        return out


def inner_index_write(corpus: str, doc_vectors: str, out: str, chunk: int) -> dict:
    import pyarrow.parquet as pq

    from core import schema
    from retrieval.index import shards
    from retrieval.index.build import build_index
    from retrieval.index.encode import corpus_passages, vectors_table

    shards.ENCODE_CHUNK = chunk
    enc = ReplayEncoder(doc_vectors)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with pq.ParquetWriter(folder / "doc_vectors.parquet", schema.DOC_VECTORS, compression="zstd") as w:
        stats = shards.encode_shards(corpus_passages(pq.ParquetFile(corpus)), enc, folder / "collection",
                                     max_length=256, batch_size=32, scale=100, shard_size=100_000,
                                     on_shard=lambda ids, reps: w.write_table(vectors_table(ids, reps)))
    write_s = time.perf_counter() - t0
    import resource

    write_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    got = {"chunk": chunk, "passages": stats["passages"], "write_s": round(write_s, 1),
           "write_peak_rss_mib": round(write_peak, 1)}
    if chunk != 100_000:  # the index does not depend on the chunk: built once
        t0 = time.perf_counter()
        build_index(folder / "collection", folder / "lucene", threads=2)
        got["lucene_s"] = round(time.perf_counter() - t0, 1)
        index_manifest(folder, stats["passages"])
    return got


def index_manifest(folder: Path, passages: int):
    """The index stage's manifest for a folder written by :func:`inner_index_write` (``manifest.json`` there, as
    :func:`stages.base.run_stage` writes it), so the later stages take it as their index."""
    from core.io import Manifest, Output, write_json
    from stages.base import MANIFEST
    from stages.index import STAGE

    outputs = {name: Output.of(name, folder / rel, passages if name in STAGE.rows else None)
               for name, rel in STAGE.outputs.items()}
    m = Manifest(stage="index", key="synthetic", dir=str(folder.resolve()), outputs=outputs,
                 stats={"passages": passages, "encoder": "splade-tiny (replayed vectors)"})
    write_json(folder / MANIFEST, m.model_dump(mode="json"))
    return m


def inner_synthetic_stage(name: str, data: str, index_dir: str, out: str) -> dict:
    """The demo's plan on the synthetic dataset up to stage ``name``, with the index folder of
    :func:`inner_index_write` as the index stage's output; earlier stages are reused from ``out``."""
    from stages.base import read_manifest, run_stage
    from stages.config import load
    from stages.graph import plan

    cfg = load("demo", [data], [*DEMO_SETTINGS])
    done: dict = {}
    for step in plan(cfg, name):
        upstream = {u: done[n] if isinstance(n, str) else [done[x] for x in n] for u, n in step.upstream.items()}
        if step.stage.name == "index":
            done[step.name] = read_manifest(index_dir)
            continue
        t0 = time.perf_counter()
        done[step.name] = run_stage(step.stage, step.fields, upstream, out)
        if step.name == name:
            return {"stage": name, "dir": done[name].dir, "stage_s": round(time.perf_counter() - t0, 1),
                    "stats": _small(done[name].stats)}
    raise SystemExit(f"no stage {name}")


def _small(stats: dict) -> dict:
    """The scalar stats of a manifest (for the benchmark's JSON)."""
    return {k: v for k, v in stats.items() if isinstance(v, (int, float, str)) or v is None}


def inner_encode(corpus: str, n: int, out: str) -> dict:
    import pyarrow.parquet as pq

    from models.splade import SpladeEncoder
    from retrieval.index.encode import corpus_passages
    from retrieval.index.shards import encode_shards

    passages = [p for _, p in zip(range(n), corpus_passages(pq.ParquetFile(corpus)))]
    enc = SpladeEncoder("splade-tiny", frozen=True)
    stats = encode_shards(passages, enc, Path(out), max_length=256, batch_size=32, scale=100, shard_size=100_000)
    return {"passages": stats["passages"], "passages_per_s": stats["passages_per_s"]}


def inner_imports() -> dict:
    exec(IMPORTS)
    return {}


# ---------------------------------------------------------------------------------------------- the benchmark
def synthetic_dataset(folder: Path, passages: int) -> Path:
    demo = ROOT / "data" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("conversations.jsonl", "qrels.tsv"):
        (folder / name).write_text((demo / name).read_text(encoding="utf-8"), encoding="utf-8")
    base = [json.loads(x) for x in (demo / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    with open(folder / "passages.jsonl", "w", encoding="utf-8") as f:
        for i in range(passages):
            p = base[i % len(base)]
            pid = p["id"] if i < len(base) else f"{p['id']}-copy{i}"
            f.write(json.dumps({"id": pid, "title": p["title"], "text": f"{p['text']} (copy {i})"}) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--encode-slice", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-memory")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--inner", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        kind, *rest = args.inner
        fn = {"demo": inner_demo_stage, "ingest": inner_ingest, "index-write": inner_index_write,
              "encode": inner_encode, "imports": inner_imports, "synthetic": inner_synthetic_stage}[kind]
        if kind == "index-write":
            rest[-1] = int(rest[-1])
        if kind == "encode":
            rest[1] = int(rest[1])
        print("RESULT " + json.dumps(fn(*rest)), flush=True)
        return
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"load_avg_1m_start": os.getloadavg()[0], "imports_only": measure(["imports"])}
    print(json.dumps(result), flush=True)
    demo_out = out / "demo"
    if not args.skip_demo:
        from stages.graph import NAMES

        result["demo"] = []
        for name in NAMES:
            result["demo"].append(measure(["demo", name, str(demo_out)]))
            print(json.dumps(result["demo"][-1]), flush=True)
    vectors = next((demo_out / "stages").glob("index-*/doc_vectors.parquet"))
    data = synthetic_dataset(out / "synthetic-data", args.passages)
    ingest = measure(["ingest", str(data), str(out / "synthetic")])
    result["synthetic"] = {"passages": args.passages, "ingest": ingest}
    print(json.dumps(ingest), flush=True)
    for chunk in (100_000, None):
        from retrieval.index.shards import ENCODE_CHUNK

        c = chunk or ENCODE_CHUNK
        r = measure(["index-write", ingest["corpus"], str(vectors), str(out / f"index-chunk{c}"), str(c)])
        result["synthetic"][f"index_write_chunk_{c}"] = r
        print(json.dumps(r), flush=True)
    enc = measure(["encode", ingest["corpus"], str(args.encode_slice), str(out / "encode-slice")])
    result["synthetic"]["encode_slice"] = enc
    print(json.dumps(enc), flush=True)
    from retrieval.index.shards import ENCODE_CHUNK

    index_dir = out / f"index-chunk{ENCODE_CHUNK}"
    for name in ("rewrite", "teacher", "distill", "evaluate"):
        r = measure(["synthetic", name, str(data), str(index_dir), str(out / "synthetic")])
        result["synthetic"][name] = r
        print(json.dumps(r), flush=True)
    result["load_avg_1m_end"] = os.getloadavg()[0]
    (out / "stage_memory.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
