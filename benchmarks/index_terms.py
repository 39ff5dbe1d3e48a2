"""What keeping only the index's terms saves on the query path (issue 28): the searcher's query vectors with
``index_terms`` off (every term of the vocabulary screened and kept) and on (the default of ``disco serve``: the
int8 screen and the exact projection cover the terms that have postings in the index only), in the same run.

For every turn of a finished run (the demo by default), the student's input is encoded one conversation at a time
and in batches of 16 (as the micro-batcher forms them at 16 clients), best of ``--repeats``, interleaved so the
machine's load hits both settings alike; per setting: milliseconds per conversation, the query terms, and the
hits. The hits and scores (k = 100) must be the same with both settings and each kept vector must be the full
one cut to the index's terms; the benchmark stops otherwise.

    .venv/bin/python -m benchmarks.index_terms --run-dir runs/demo --out runs/bench-index-terms
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-index-terms"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the service's default: 1)")
    args = parser.parse_args()
    import polars as pl
    import torch

    from benchmarks.common import best_ms, describe
    from core.io import write_json, write_text
    from core.run_record import RunRecord
    from disco.serving.search import Searcher

    torch.set_num_threads(args.threads)
    turns = pl.read_parquet(RunRecord.read(args.run_dir).output("ingest", "turns")).to_dicts()
    convs = [[{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
             + [{"speaker": "user", "text": t["question"]}] for t in turns]
    full, cut = (Searcher.open(args.run_dir, index_terms=x) for x in (False, True))
    try:
        texts = [cut.text(c) for c in convs]
        indexed = set(cut.index.terms())
        whole, kept = full.query_vectors(texts), cut.query_vectors(texts)
        if kept != [{t: w for t, w in v.items() if t in indexed} for v in whole]:
            raise SystemExit("the kept vectors are not the full ones cut to the index's terms")
        k = 100
        if full.index.search({str(i): v for i, v in enumerate(whole) if v}, k) != \
                cut.index.search({str(i): v for i, v in enumerate(kept) if v}, k):
            raise SystemExit("the hits differ between the full and the cut vectors")
        ms = {"off": {"single": 0.0, "batch16": 0.0}, "on": {"single": 0.0, "batch16": 0.0}}
        for start in range(0, len(texts), 16):  # interleaved: one batch, then its texts one by one, both settings
            group = texts[start:start + 16]
            for name, s in (("off", full), ("on", cut)):
                ms[name]["batch16"] += best_ms(lambda: s.query_vectors(group), args.repeats)
                ms[name]["single"] += sum(best_ms(lambda: s.query_vectors([t]), args.repeats) for t in group)
        n = len(texts)
        rows = [{"index_terms": name, "screened_terms": len(full.tokens) if name == "off" else len(cut.terms),
                 "ms_single": v["single"] / n, "ms_batch16": v["batch16"] / n,
                 "query_terms": sum(map(len, whole if name == "off" else kept)) / n} for name, v in ms.items()]
    finally:
        full.close(), cut.close()
    ratio = {m: rows[0][m] / rows[1][m] for m in ("ms_single", "ms_batch16")}
    md = "\n".join([
        f"{n} conversations of {args.run_dir} (torch threads {args.threads}, best of {args.repeats}); "
        f"hits at k={k} identical: yes", "",
        "| index_terms | screened terms | ms / conversation, one at a time | ms / conversation, batches of 16 "
        "| query terms |", "|---|---|---|---|---|",
        *[f"| {r['index_terms']} | {r['screened_terms']} | {r['ms_single']:.2f} | {r['ms_batch16']:.2f} | "
          f"{r['query_terms']:.1f} |" for r in rows], "",
        f"off / on: {ratio['ms_single']:.2f}x one at a time, {ratio['ms_batch16']:.2f}x in batches of 16"])
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "index_terms.md", md)
    write_json(args.out / "index_terms.json", {"rows": rows, "ratio": ratio, "machine": describe()})
    print(json.dumps(ratio))


if __name__ == "__main__":
    main()
