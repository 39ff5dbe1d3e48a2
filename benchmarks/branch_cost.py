"""What a deepened student costs per query (issue 25): SPLADE-tiny with 0, 1 and 2 layers on its residual branch
(models/branch.py), one conversation at a time, as `disco serve` encodes it.

The branch's output projection is set to random non-zero weights (a trained branch; at zero the layers still run,
so the cost is the same). Conversations: the demo's turns in the student's format (user turns only, the demo
preset's input). Per conversation, the best of ``--repeats`` calls; p50 / p95 over conversations and each depth's
p50 against depth 0's, all in the same run, interleaved per conversation so that load hits every depth alike.

    .venv/bin/python -m benchmarks.branch_cost --out runs/bench-branch
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import describe, percentiles
from benchmarks.query_path import conversations, timed
from core.io import write_json, write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-length", type=int, default=20, help="conversations of 1, 3 and 5 turns each")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-branch"))
    args = ap.parse_args()
    import torch

    from models.conversation import StudentInput
    from models.splade import SpladeEncoder
    from models.student import StudentCard

    torch.manual_seed(0)
    card = StudentCard(input=StudentInput(answers=False))
    encoders = {}
    for depth in args.depths:
        enc = SpladeEncoder("splade-tiny", extra_layers=depth)
        if enc.branch is not None:
            with torch.no_grad():
                enc.branch.out.weight.normal_(0, 0.05)
        encoders[depth] = enc.frozen()
    texts = [card.text(q, h) for n in (1, 3, 5) for q, h in conversations(n, args.per_length)]
    ms: dict[int, list[float]] = {d: [] for d in encoders}
    for t in texts:
        for d, enc in encoders.items():
            ms[d] += timed(lambda x: enc.encode([x], card.max_length, batch_size=1), [t], args.repeats)
    base = percentiles(ms[args.depths[0]])["p50"]
    rows = [{"extra layers": d, **{k: round(v, 2) for k, v in percentiles(v).items()},
             "p50 vs first": round(percentiles(v)["p50"] / base, 2)} for d, v in ms.items()]
    m = describe()
    lines = [f"Deepened student, one conversation at a time ({len(texts)} demo conversations, user turns, best of "
             f"{args.repeats}); {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, load average "
             f"{m['load_avg_1m']:.1f}.", "", "| extra layers | p50 ms | p95 ms | p50 vs first |", "|---|---|---|---|"]
    lines += [f"| {r['extra layers']} | {r['p50']} | {r['p95']} | {r['p50 vs first']}x |" for r in rows]
    print("\n".join(lines))
    write_text(args.out / "report.md", "\n".join(lines) + "\n")
    write_json(args.out / "results.json", {"rows": rows, "machine": m})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
