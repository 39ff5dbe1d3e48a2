"""Cost of one LoRA training step of the rewriter (models/rewriter/train.py), lever by lever, in one run.

Each variant trains ``--steps`` steps (after one warm-up step) of batch ``--batch`` on the same CANARD examples
(../shared/data/canard; skipped when absent), from the same fresh adapter, and reports seconds per step and
training tokens per second (real tokens, padding excluded); ratios are against the first variant, measured in the
same run. The levers, added one at a time:

1. ``baseline``: the rewrite stage's instruction prompt (history up to 1,200 characters), batches in random order
   (padding to the longest), the full vocabulary projection at every position (``model(..., labels=...)``);
2. ``+ target logits``: the LM head at the target positions only (:func:`models.rewriter.train.target_loss`);
3. ``+ compact prompt``: no instruction, history up to 1,000 characters (the preset's prompt);
4. ``+ length-sorted``: batches of similar lengths (:func:`models.rewriter.train.batches`);
5. ``+ top 16 layers``: LoRA on the upper 16 of 30 layers (backward stops there; its dev figure is in
   docs/benchmarks.md);
6. ``length-sorted, 1 thread``: variant 4 with one torch thread instead of torch's default (the thread setting).

``--variants`` runs a subset (by number, in the order given; ratios against the first one run).

    .venv/bin/python -m benchmarks.rewriter_step --out runs/bench-rewriter-step
    .venv/bin/python -m benchmarks.rewriter_step --variants 4 5 6 --out runs/bench-rewriter-levers
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from core.io import write_json, write_text


def _examples(prompt: str, chars: int, n: int):
    from models.rewrite.config import RewriteConfig
    from models.rewriter.config import RewriterConfig
    from retrieval.rewriter_data import build

    train, _, _ = build(RewriterConfig(sources=["canard"]), RewriteConfig(prompt=prompt, max_history_chars=chars))
    return random.Random(0).sample(train, n)


def _full_logits_loss(model, batch):
    import torch

    labels = torch.full_like(batch["input_ids"], -100)
    labels[batch["rows"], batch["cols"] + 1] = batch["labels"]
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"], labels=labels).loss


def run_variant(name: str, examples, cfg, sorted_batches: bool, target_logits: bool, steps: int,
                threads: int | None = None) -> dict:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_variant(name, examples, cfg, sorted_batches, target_logits, steps)
    finally:
        torch.set_num_threads(before)


def _run_variant(name: str, examples, cfg, sorted_batches: bool, target_logits: bool, steps: int) -> dict:
    import torch

    from models.rewriter.lora import add_lora, load_base
    from models.rewriter.train import batches, collate, encode, target_loss

    model, tokenizer = load_base(cfg.base)
    model = add_lora(model, cfg)
    pairs, _ = encode(tokenizer, examples, cfg)
    lengths = [len(p) + len(t) for p, t in pairs]
    if sorted_batches:
        plan = batches(lengths, cfg.batch_size, steps + 1, cfg.seed)
    else:
        order = list(range(len(pairs)))
        random.Random(cfg.seed).shuffle(order)
        plan = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)][: steps + 1]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    seconds, tokens, padded = 0.0, 0, 0
    for i, idx in enumerate(plan):
        batch = collate([pairs[j] for j in idx], tokenizer.eos_token_id)
        t0 = time.perf_counter()
        loss = target_loss(model, batch) if target_logits else _full_logits_loss(model.get_base_model(), batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
            padded += batch["input_ids"].numel()
    return {"variant": name, "s/step": round(seconds / steps, 2), "tokens/s": round(tokens / seconds, 1),
            "tokens/step": round(tokens / steps), "padding share": round(1 - tokens / padded, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-rewriter-step"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--variants", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6], help="which levers (1-6)")
    args = ap.parse_args()
    from models.rewriter.config import RewriterConfig
    from retrieval.rewrite_eval import known_datasets

    if not known_datasets()["canard-dev"][1].exists():
        raise SystemExit("skipped: ../shared/data/canard is absent")
    n = args.batch * (args.steps + 1)
    cfg = RewriterConfig(batch_size=args.batch)
    long_prompt, short_prompt = _examples("instruction", 1200, n), _examples("compact", 1000, n)
    variants = [("baseline", long_prompt, cfg, False, False, None),
                ("+ target logits", long_prompt, cfg, False, True, None),
                ("+ compact prompt", short_prompt, cfg, False, True, None),
                ("+ length-sorted", short_prompt, cfg, True, True, None),
                ("+ top 16 layers", short_prompt, cfg.model_copy(update={"top_layers": 16}), True, True, None),
                ("length-sorted, 1 thread", short_prompt, cfg, True, True, 1)]
    rows = []
    for number in args.variants:
        name, examples, c, sort, target, threads = variants[number - 1]
        rows.append(run_variant(name, examples, c, sort, target, args.steps, threads))
        rows[-1]["vs first"] = round(rows[0]["s/step"] / rows[-1]["s/step"], 2)
        print(rows[-1], flush=True)
    cols = list(rows[0])
    lines = [f"# Rewriter LoRA step ({args.steps} steps of batch {args.batch} per variant, CANARD examples)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    write_text(args.out / "report.md", "\n".join(lines) + "\n")
    write_json(args.out / "results.json", rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
