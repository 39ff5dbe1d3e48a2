"""Query latency of DiSCo's student path against the LLM-rewrite path it replaces, one query at a time.

DiSCo's efficiency claim (Lupart et al., SIGIR 2025, arXiv 2410.14609): the student reads the conversation and
searches directly, where the rewrite pipeline first asks an LLM for a self-contained query. Over the test turns of
a finished run, each measured in the same process on the same index:

- student: format the conversation (the student card) + encode with the student + quantise + search (the
  searcher's backend: ``--backend``, auto by default: the in-memory sparse matrix on the demo)
  (:meth:`disco.serving.search.Searcher.search`, exactly what ``disco serve`` runs);
- rewrite: LLM rewrite (the run's rewrite model, greedy, its ``max_new_tokens``) + encode the rewrite with the
  frozen encoder of the same size + quantise + the same search.

Reported: p50 / p95 / mean ms per path and the p50 / p95 ratios. The rewrite path is slow, so it runs on the first
``--rewrite-turns`` turns only (the student on all of them).

    .venv/bin/python -m benchmarks.query_latency --run-dir runs/demo --out runs/bench-latency
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.common import percentiles


def summarise(student: list[float], rewrite: list[float]) -> tuple[list[dict], dict]:
    """Table rows and the p50 / p95 ratios rewrite / student."""
    s, r = percentiles(student), percentiles(rewrite)
    ratios = {"p50": r["p50"] / s["p50"], "p95": r["p95"] / s["p95"]}
    rows = [{"path": "student (format + encode + search)", **s},
            {"path": "rewrite (LLM rewrite + encode + search)", **r}]
    return rows, ratios


def markdown(rows: list[dict], ratios: dict, meta: dict) -> str:
    lines = ["| path | queries | p50 ms | p95 ms | mean ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['mean']:.1f} |" for r in rows]
    lines.append(f"\nrewrite / student: p50 {ratios['p50']:.0f}x, p95 {ratios['p95']:.0f}x")
    lines.append(f"\nrun `{meta['run']}`, {meta['turns']} test turns, rewrite model `{meta['llm']}` "
                 f"(max_new_tokens {meta['max_new_tokens']}), torch threads {meta['threads']}, "
                 f"search backend {meta.get('backend', 'lucene')}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-latency"))
    parser.add_argument("--rewrite-turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backend", choices=["auto", "lucene", "sparse"], default="auto",
                        help="the searcher of both paths (disco serve's --backend)")
    args = parser.parse_args()

    import polars as pl
    import torch

    from core.io import write_json, write_text
    from disco.serving.search import Searcher, run_paths
    from models.rewrite.hf import HFRewriter
    from models.rewrite.prompt import build_messages
    from models.splade import SpladeEncoder, impact_vector, vocab_tokens

    from core.run_record import RunRecord
    from stages.config import PipelineConfig

    record = RunRecord[PipelineConfig].read(args.run_dir, need=("ingest",))
    cfg = record.config
    turns = pl.read_parquet(record.output("ingest", "turns")).filter(
        pl.col("split") == cfg.evaluate.split).to_dicts()
    convs = [[{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
             + [{"speaker": "user", "text": t["question"]}] for t in turns]
    searcher = Searcher.open(args.run_dir, backend=args.backend)
    for c in convs[: args.warmup]:
        searcher.search(c, k=10)
    student = []
    for c in convs:
        t0 = time.perf_counter()
        searcher.search(c, k=10)
        student.append(1000 * (time.perf_counter() - t0))
    print(f"student: {percentiles(student)}", flush=True)

    from stages.rewriter import resolve_llm  # the fine-tuned rewriter's merged folder, when the run names it

    rcfg = resolve_llm(cfg.rewriter, cfg.rewrite, Path(args.out) / "rewriter").model_copy(
        update={"backend": "transformers"})
    llm = HFRewriter(rcfg)
    frozen = SpladeEncoder(cfg.encoder.model, frozen=True)
    tokens = vocab_tokens(frozen.tokenizer)
    card = searcher.card

    def rewrite_path(t: dict) -> None:
        text = llm.rewrite([build_messages(t["question"], t["history"], rcfg.max_history_chars, rcfg.mode,
                                           rcfg.prompt)])[0][0]
        (ids, w), = frozen.encode([text or t["question"]], card.max_length, batch_size=1)
        searcher.index.search({"q": impact_vector(ids, w, tokens, card.quant_scale)}, 10)

    rewrite_path(turns[0])  # warm-up
    rewrite = []
    for i, t in enumerate(turns[: args.rewrite_turns]):
        t0 = time.perf_counter()
        rewrite_path(t)
        rewrite.append(1000 * (time.perf_counter() - t0))
        print(f"rewrite {i + 1}/{min(len(turns), args.rewrite_turns)}: {rewrite[-1]:.0f} ms", flush=True)
    searcher.close()
    rows, ratios = summarise(student, rewrite)
    meta = {"run": str(args.run_dir), "turns": len(turns), "llm": rcfg.model, "max_new_tokens": rcfg.max_new_tokens,
            "threads": torch.get_num_threads(), "backend": searcher.backend,
            "student_median_check": statistics.median(student)}
    md = markdown(rows, ratios, meta)
    print(md)
    write_text(args.out / "query_latency.md", md)
    write_json(args.out / "query_latency.json", {"rows": rows, "ratios": ratios, "meta": meta,
                                                 "student_ms": student, "rewrite_ms": rewrite})


if __name__ == "__main__":
    main()
