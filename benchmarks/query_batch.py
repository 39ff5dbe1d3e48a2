"""The search service's encoding of a batch of conversations, lever by lever (issue 28): what the batching thread
spends per conversation with transformers' forward and the dense [B, V] vectors (before), with the lean forward of
models/lean_bert.py (lean), with the sparse query vectors and the searcher's own padding as well (padded), and
with all texts packed into one pass without padding (now, models/packed.py), in one run.

For every turn of a finished run (the demo by default), the student's inputs are encoded by
``Searcher.query_vectors`` in batches of ``--batch`` (as the micro-batcher forms them at 16 clients over two
workers) and one at a time, best of ``--repeats``, the settings interleaved so the machine's load hits them alike.
The settings are switched by replacing functions in this process only:

- ``before``: ``lean_bert.supported_blocks`` says no (transformers' ``BertModel.forward`` runs), the vectors come
  from ``SpladeEncoder.pool`` (a [B, V] matrix, then its non-zeros), groups are padded by ``tokenizer.pad``;
- ``lean``: the lean forward, the rest as before;
- ``padded``: the lean forward, ``SpladeEncoder.sparse`` and ``batching.pad_group``, one pass per padded length;
- ``now``: the code as it is (``SpladeEncoder.sparse_packed``: one packed pass per batch).

The quantised query vectors must be the same in the three padded settings (the benchmark stops otherwise); the
packed pass differs from them in attention's last bits, so the impacts that differ from ``before`` are counted
(0 on the demo).

    .venv/bin/python -m benchmarks.query_batch --run-dir runs/demo --out runs/bench-query-batch
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path


@contextlib.contextmanager
def setting(name: str):
    """Switch this process to the code path of ``name`` (see the module) while inside."""
    import torch

    from disco.serving import search
    from models import lean_bert
    from models.splade import SpladeEncoder

    def dense(self, batch, terms=None):
        out = []
        for row in self.pool(batch, terms).float().cpu():
            ids = torch.nonzero(row).squeeze(-1)
            out.append((ids.numpy().astype("int32"), row[ids].numpy().astype("float32")))
        return out

    saved = (lean_bert.supported_blocks, SpladeEncoder.sparse, search.pad_group, SpladeEncoder.sparse_packed)
    if name != "now":
        SpladeEncoder.sparse_packed = lambda *a, **k: None
    if name in ("before", "lean"):
        SpladeEncoder.sparse = dense
        search.pad_group = lambda *a, **k: None
    if name == "before":
        lean_bert.supported_blocks = lambda *a, **k: False
    try:
        yield
    finally:
        lean_bert.supported_blocks, SpladeEncoder.sparse, search.pad_group, SpladeEncoder.sparse_packed = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-query-batch"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import polars as pl
    import torch

    from benchmarks.common import best_ms, describe
    from core.io import write_json, write_text
    from core.run_record import RunRecord
    from disco.serving.search import Searcher

    torch.set_num_threads(1)  # the service's default
    turns = pl.read_parquet(RunRecord.read(args.run_dir).output("ingest", "turns")).to_dicts()
    convs = [[{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
             + [{"speaker": "user", "text": t["question"]}] for t in turns]
    searcher = Searcher.open(args.run_dir)
    names = ("before", "lean", "padded", "now")
    try:
        texts = [searcher.text(c) for c in convs]
        vectors = {}
        for name in names:
            with setting(name):
                vectors[name] = searcher.query_vectors(texts)
        if not vectors["before"] == vectors["lean"] == vectors["padded"]:
            raise SystemExit("the query vectors differ between the padded settings")
        differ = sum(len(set(a.items()) ^ set(b.items())) for a, b in zip(vectors["before"], vectors["now"]))
        batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
        ms = {name: {"batch": 0.0, "single": 0.0} for name in names}
        for group in batches:  # interleaved: one batch, then its texts one by one, every setting
            for name in names:
                with setting(name):
                    ms[name]["batch"] += best_ms(lambda: searcher.query_vectors(group), args.repeats)
                    ms[name]["single"] += sum(best_ms(lambda: searcher.query_vectors([t]), args.repeats)
                                              for t in group)
    finally:
        searcher.close()
    n = len(texts)
    rows = [{"setting": name, "ms_batch": v["batch"] / n, "ms_single": v["single"] / n} for name, v in ms.items()]
    base = rows[0]
    md = "\n".join([
        f"{n} conversations of {args.run_dir}, one torch thread, best of {args.repeats}; query vectors identical in "
        f"the padded settings: yes; (term, impact) pairs that differ between now and before: {differ}", "",
        f"| setting | ms / conversation, batches of {args.batch} | ms / conversation, one at a time | "
        "before / this (batches, one at a time) |", "|---|---|---|---|",
        *[f"| {r['setting']} | {r['ms_batch']:.2f} | {r['ms_single']:.2f} | {base['ms_batch'] / r['ms_batch']:.2f}x, "
          f"{base['ms_single'] / r['ms_single']:.2f}x |" for r in rows]])
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "query_batch.md", md)
    write_json(args.out / "query_batch.json", {"rows": rows, "batch": args.batch, "packed_differ": differ,
                                               "machine": describe()})
    print(json.dumps({r["setting"]: round(base["ms_batch"] / r["ms_batch"], 3) for r in rows}))


if __name__ == "__main__":
    main()
