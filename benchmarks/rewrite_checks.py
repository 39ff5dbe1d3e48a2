"""Choose the output checks of the LLM rewriter (models.rewrite.checks.check_rewrite) by measurement.

Reads the per-turn outputs of `disco rewrite-eval` runs made WITHOUT output checks (one per prompt), applies
each combination of checks and thresholds offline (a failing rewrite falls back to the raw utterance, as the
rewrite stage does), and reports token F1 / ROUGE-L / exact / copied / answer-like against the human rewrites.
Choose on a dev slice (e.g. the first 120 CANARD dev turns), report on others.

    .venv/bin/python -m benchmarks.rewrite_checks runs/rw-select/instruction runs/rw-select/few-shot \\
        --dataset canard-dev --limit 120 --out runs/rw-select/checks.md
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import polars as pl

from retrieval import rewrite_eval as rq
from core.io import write_text
from models.rewrite.checks import CHECKS, check_rewrite
from models.rewrite.parse import postprocess


def variants():
    yield "none", {"checks": ()}
    for n in range(1, len(CHECKS) + 1):
        for combo in itertools.combinations(CHECKS, n):
            kept = (0.34, 0.5, 0.67, 0.8, 0.9, 1.0) if "drops-words" in combo else (0.5,)
            growth = (6, 12) if "too-long" in combo else (12,)
            for k, g in itertools.product(kept, growth):
                yield f"{'+'.join(combo)} kept>={k} growth<={g}", {"checks": combo, "min_kept": k, "max_growth": g}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="rewrite-eval output folders (per_turn.parquet)")
    ap.add_argument("--dataset", default="canard-dev")
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", type=Path, default=Path("runs/rewrite-checks.md"))
    args = ap.parse_args()
    fmt, path, opts = rq.resolve_dataset(args.dataset)
    turns = rq.slice_turns(rq.load_turns(fmt, path, **opts), args.skip, args.limit)
    question = dict(zip(turns["turn_id"], turns["question"]))
    rows = []
    for run in args.runs:
        pt = pl.read_parquet(run / "per_turn.parquet").filter(~pl.col("source").is_in(["utterance", "human"]))
        pt = pt.filter(pl.col("turn_id").is_in(list(question)))
        for name, kw in variants():
            texts = []
            for t, r in pt.select("turn_id", "rewrite").iter_rows():
                q = question[t]
                r = postprocess(r) or r  # today's post-processing, as the rewrite stage applies it to cached text
                texts.append((t, q if check_rewrite(r, q, **kw) else r))
            df = pl.DataFrame(texts, schema={"turn_id": pl.String, "rewrite": pl.String}, orient="row")
            _, summary = rq.evaluate(turns, df.with_columns(pl.lit("x").alias("source")).select(
                "turn_id", "source", "rewrite"))
            s = summary.filter(pl.col("source") == "x").row(0, named=True)
            base = summary.filter(pl.col("source") == "utterance").row(0, named=True)
            rows.append({"prompt": run.name, "checks": name, "turns": s["turns"],
                         **{m: round(s[m], 4) for m in rq.METRICS},
                         "utterance token_f1": round(base["token_f1"], 4)})
    rows.sort(key=lambda r: -r["token_f1"])
    cols = list(rows[0])
    md = "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                   + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])
    write_text(args.out, md + "\n")
    print(md)


if __name__ == "__main__":
    main()
