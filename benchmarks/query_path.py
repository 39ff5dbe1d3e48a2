"""The student's query path, one conversation at a time (issue 12): encode latency p50 / p95 for conversations of
1, 5 and 10 turns, the share of it spent on the vocabulary projection, and the search that follows.

The student is SPLADE-tiny reading the conversation in the paper's format (``StudentCard`` defaults: newest turn
first, agent answers included, 256 tokens), which costs exactly what a trained student costs (same architecture).
Conversations of n turns are demo turns in order (two demo conversations joined when one is shorter than n).

- ``plain``: tokenize + ``AutoModelForMaskedLM`` logits [1, L, 30522] + max + log1p(relu) (before issue 12);
- ``chunked``: ``SpladeEncoder.encode([text], batch_size=1)`` with the int8 screen off (the chunked projection of
  models/projection.py, issue 12);
- ``disco``: the same with the screen on (the default of a frozen encoder: models/screen.py, issue 28);
- ``body``: the transformer layers and head transform alone (what is left without the projection).

Vectors of both paths are compared first (identical fp32). Search: Lucene impact search against the sparse
searcher on the demo index, k=10 and k=1000, one query at a time.

    .venv/bin/python -m benchmarks.query_path [--repeats 3] [--out runs/bench-query]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, percentiles

DEMO = ROOT / "data" / "demo"


def conversations(turns: int, limit: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """(question, history oldest first) of up to ``limit`` conversations of exactly ``turns`` turns."""
    convs = [json.loads(x)["turns"] for x in (DEMO / "conversations.jsonl").read_text().splitlines()]
    flat = [t for c in convs for t in c]
    out = []
    for start in range(0, len(flat) - turns, max(1, len(flat) // limit)):
        window = flat[start:start + turns]
        history = [x for t in window[:-1] for x in (("user", t["question"]), ("agent", t["answer"]))]
        out.append((window[-1]["question"], history))
        if len(out) == limit:
            break
    return out


def timed(fn, items, repeats: int) -> list[float]:
    """Per item, the best of ``repeats`` calls (ms): the machine is shared, the minimum is the least noisy."""
    out = []
    for x in items:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t0)
        out.append(1000 * best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-length", type=int, default=30, help="conversations per length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-query"))
    args = parser.parse_args()
    import torch

    from core.io import write_json, write_text
    from benchmarks.common import describe
    from models.projection import head_parts
    from models.splade import SpladeEncoder
    from models.student import StudentCard

    card, enc = StudentCard(), SpladeEncoder("splade-tiny", frozen=True)
    mlm, transform = enc.mlm, head_parts(enc.mlm)[0]

    def plain(text: str) -> torch.Tensor:
        with torch.inference_mode():
            b = enc.tokenize([text], card.max_length)
            return torch.log1p(torch.relu(mlm(**b).logits.max(dim=1).values))[0]

    def body(text: str) -> None:
        with torch.inference_mode():
            transform(mlm.base_model(**enc.tokenize([text], card.max_length)).last_hidden_state)

    def disco(text: str):
        return enc.encode([text], card.max_length, batch_size=1)[0]

    def chunked(text: str):
        enc.screen_terms = False
        try:
            return enc.encode([text], card.max_length, batch_size=1)[0]
        finally:
            enc.screen_terms = True

    rows, texts_all = [], []
    for n in (1, 5, 10):
        texts = [card.text(q, h) for q, h in conversations(n, args.per_length)]
        texts_all += texts
        for t in texts[:3]:  # equality first (and warm-up)
            ref = plain(t)
            nz = torch.nonzero(ref).squeeze(-1)
            for ids, w in (disco(t), chunked(t)):
                assert torch.equal(torch.from_numpy(ids).long(), nz) and torch.equal(torch.from_numpy(w), ref[nz]), n
        tokens = float(np.mean([len(enc.tokenize([t], card.max_length)["input_ids"][0]) for t in texts]))
        fns = (("plain", plain), ("chunked", chunked), ("disco", disco), ("body", body))
        ms = {name: [] for name, _ in fns}
        for t in texts:  # interleaved per conversation: load changes on a shared machine hit all three alike
            for name, fn in fns:
                ms[name] += timed(fn, [t], args.repeats)
        p = {name: percentiles(v) for name, v in ms.items()}
        rows.append({"turns": n, "conversations": len(texts), "tokens_mean": tokens,
                     **{f"{name}_{q}": p[name][q] for name in p for q in ("p50", "p95")},
                     "projection_share_plain": 1 - p["body"]["p50"] / p["plain"]["p50"],
                     "projection_share_disco": 1 - p["body"]["p50"] / p["disco"]["p50"],
                     "speedup_p50": p["plain"]["p50"] / p["disco"]["p50"],
                     "screen_speedup_p50": p["chunked"]["p50"] / p["disco"]["p50"]})
        print(json.dumps(rows[-1]), flush=True)
    search = search_latency(enc, texts_all, args.out / "work")
    result = {"rows": rows, "search": search, "machine": describe()}
    md = markdown(result)
    print(md)
    write_text(args.out / "query_path.md", md)
    write_json(args.out / "query_path.json", result)


def search_latency(enc, texts: list[str], work) -> dict:
    """Per-query search time of both exact backends on the demo index, for the student's query vectors."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core import schema
    from models.splade import SpladeConfig, impact_vector, vocab_tokens
    from retrieval.index.build import build_index
    from retrieval.index.encode import encode_corpus
    from retrieval.index.search import ImpactSearcher
    from retrieval.index.sparse import SparseSearcher

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = [json.loads(x) for x in (DEMO / "passages.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist([{"doc_id": r["id"], "title": r["title"], "text": r["text"]} for r in rows],
                                        schema=schema.CORPUS), work / "corpus.parquet")
    encode_corpus(work / "corpus.parquet", SpladeConfig(), work, shard_size=100_000)
    build_index(work / "collection", work / "lucene", threads=2)
    tokens = vocab_tokens(enc.tokenizer)
    queries = [impact_vector(i, w, tokens) for i, w in enc.encode(texts, 256)]
    lucene, fast = ImpactSearcher(work / "lucene", threads=1), SparseSearcher(work / "doc_vectors.parquet", 100, tokens)
    out = {"passages": len(rows), "by_k": {}}
    for k in (10, 1000):
        same = [lucene.search({"q": q}, k) == fast.search({"q": q}, k) for q in queries]
        ms = {name: timed(lambda q: s.search({"q": q}, k), queries, 3) for name, s in (("lucene", lucene),
                                                                                        ("sparse", fast))}
        out["by_k"][k] = {"lucene_p50": percentiles(ms["lucene"])["p50"],
                          "sparse_p50": percentiles(ms["sparse"])["p50"], "identical": float(np.mean(same))}
    lucene.close()
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"SPLADE-tiny as the student, one conversation at a time, best of 3 per conversation; {m['cpu']}, "
             f"{m['cores']} cores, torch threads {m['torch_threads']}, load average {m['load_avg_1m']:.1f}.", "",
             "| turns | tokens | plain p50 / p95 ms | chunked p50 ms | disco (screened) p50 / p95 ms | speed-up p50 "
             "vs plain / vs chunked | body p50 ms | projection share plain / disco |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['turns']} | {r['tokens_mean']:.0f} | {r['plain_p50']:.1f} / {r['plain_p95']:.1f} | "
                     f"{r['chunked_p50']:.1f} | {r['disco_p50']:.1f} / {r['disco_p95']:.1f} | {r['speedup_p50']:.2f}x / "
                     f"{r['screen_speedup_p50']:.2f}x | {r['body_p50']:.1f} | "
                     f"{r['projection_share_plain']:.0%} / {r['projection_share_disco']:.0%} |")
    s = result["search"]
    lines += ["", f"Search, one query at a time on the demo index ({s['passages']} passages), p50 ms:", "",
              "| k | Lucene | sparse | identical hits |", "|---|---|---|---|"]
    for k, v in s["by_k"].items():
        lines.append(f"| {k} | {v['lucene_p50']:.2f} | {v['sparse_p50']:.2f} | {v['identical']:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
