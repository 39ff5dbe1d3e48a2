"""Fine-tune the rewriting LLM with LoRA: loss on the rewrite tokens only, dev F1 picks the step, resumable.

An example is the chat messages the rewrite stage builds for a turn (:func:`models.rewrite.prompt.build_messages`,
so training sees exactly the prompt that rewriting will) and the human rewrite as the assistant's reply, ended by
the end-of-turn token. Batches are length-sorted buckets (less padding), padded on the LEFT as in generation, so
every target sits at the end of its row; position ids follow the attention mask, as ``generate`` computes them.
The vocabulary projection runs at the target positions only (the logits of a 49k vocabulary at every prompt
position would cost more than the rest of the step).

Every ``eval_every`` steps: greedy rewrites of the dev turns (the rewrite stage's own generation code), their
token F1 against the human rewrites, and a checkpoint (adapter, optimizer, schedule, RNG, history) written
atomically to ``work/checkpoint/``; a killed run resumes from it. The adapter of the best dev step is kept.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from core.io import atomic_path, write_json
from core.text import token_f1
from models.rewrite.checks import check_rewrite
from models.rewrite.config import RewriteConfig
from models.rewriter.config import Example, RewriterConfig
from models.rewriter.lora import add_lora, adapter_state, load_base, set_adapter_state

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
CHECKPOINT = "checkpoint"


@dataclass
class TrainResult:
    best_step: int
    best_f1: float
    history: list[dict] = field(default_factory=list)  # per evaluation: step, dev_f1, dev_f1_checked, ...
    losses: list[dict] = field(default_factory=list)  # per step: step, loss, lr, seconds
    dev_samples: list[dict] = field(default_factory=list)  # the best step's dev rewrites beside the human ones
    skipped: int = 0  # examples left out (prompt or rewrite too long)
    seconds: float = 0.0


def encode(tokenizer, examples: list[Example], cfg: RewriterConfig) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(prompt ids, target ids + end-of-turn) per example within the length limits, and how many were left out."""
    out, skipped = [], 0
    for ex in examples:
        prompt = tokenizer.apply_chat_template(ex.messages, tokenize=False, add_generation_prompt=True)
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        t = tokenizer(ex.target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        if len(p) > cfg.max_prompt_tokens or len(t) > cfg.max_target_tokens:
            skipped += 1
            continue
        out.append((p, t))
    return out, skipped


def batches(n_items: list[int], batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of example indices: each epoch shuffles, sorts windows of 50 batches by length and cuts
    them into batches (similar lengths together), then shuffles the batch order. Deterministic in ``seed``."""
    rng = random.Random(seed)
    out: list[list[int]] = []
    while len(out) < steps:
        order = list(range(len(n_items)))
        rng.shuffle(order)
        window = 50 * batch_size
        epoch = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w : w + window], key=lambda i: n_items[i])
            epoch += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(epoch)
        out += epoch
    return out[:steps]


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` / ``attention_mask`` / ``position_ids``, and the target positions and ids."""
    seqs = [p + t for p, t in pairs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, cols, labels = [], [], []
    for i, ((p, t), s) in enumerate(zip(pairs, seqs)):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
        for j, tok in enumerate(t):  # the hidden state before each target token predicts it
            rows.append(i)
            cols.append(width - len(t) + j - 1)
            labels.append(tok)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
            "rows": torch.tensor(rows), "cols": torch.tensor(cols), "labels": torch.tensor(labels)}


def target_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the target tokens; the LM head runs at their positions only."""
    causal = model.get_base_model()
    hidden = causal.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          position_ids=batch["position_ids"]).last_hidden_state
    logits = causal.lm_head(hidden[batch["rows"], batch["cols"]])
    return torch.nn.functional.cross_entropy(logits.float(), batch["labels"])


def dev_rewrites(model, tokenizer, dev: list[Example], rewrite: RewriteConfig) -> list[str]:
    """Greedy rewrites of the dev turns with the rewrite stage's generation code (first line, postprocessed)."""
    from models.rewrite.hf import HFRewriter

    rewriter = HFRewriter.from_loaded(rewrite.model_copy(update={"retry_min_words": 0}), model, tokenizer)
    return [text for text, _ in rewriter.rewrite([ex.messages for ex in dev])]


def dev_scores(rewrites: list[str], dev: list[Example], checks: bool) -> dict[str, float]:
    """Mean token F1 against the human rewrites: as generated, and after the output checks (a failing rewrite
    replaced by the utterance, as the rewrite stage does with ``output_checks``); with ``checks`` the latter
    is the figure that chooses the step."""
    raw = [token_f1(r, ex.target) for r, ex in zip(rewrites, dev)]
    kept = [r if not check_rewrite(r, ex.question) else ex.question for r, ex in zip(rewrites, dev)]
    checked = [token_f1(r, ex.target) for r, ex in zip(kept, dev)]
    n = max(len(dev), 1)
    return {"dev_f1": sum(checked if checks else raw) / n, "dev_f1_raw": sum(raw) / n,
            "dev_f1_checked": sum(checked) / n, "dev_fallbacks": sum(k != r for k, r in zip(kept, rewrites))}


def _save_checkpoint(work: Path, model, opt, sched, step: int, result: TrainResult, best: dict) -> None:
    state = {"step": step, "adapter": adapter_state(model), "best_adapter": best, "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
             "result": {k: getattr(result, k) for k in ("best_step", "best_f1", "history", "losses",
                                                           "dev_samples")}}
    with atomic_path(work / CHECKPOINT / "state.pt") as tmp:
        torch.save(state, tmp)


def _load_checkpoint(work: Path) -> dict | None:
    path = work / CHECKPOINT / "state.pt"
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:  # a checkpoint from another torch or a damaged file: start over, say so
        log.warning("rewriter: checkpoint %s unreadable (%s): training from the start", path, e)
        return None


def train(examples: list[Example], dev: list[Example], cfg: RewriterConfig, rewrite: RewriteConfig, work: Path,
          progress: Progress | None = None, stop_after: int | None = None):
    """Fine-tune ``cfg.base`` on ``examples``; returns (the peft model holding the best dev step's adapter, the
    tokenizer, :class:`TrainResult`). ``work`` holds the checkpoint (resumed when present: same config assumed,
    the caller keys ``work`` by it). ``stop_after``: stop after that many steps of this call (tests: a kill)."""
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        model, tokenizer = load_base(cfg.base)
        torch.manual_seed(cfg.seed)
        model = add_lora(model, cfg)
        pairs, skipped = encode(tokenizer, examples, cfg)
        if not pairs:
            raise ValueError("no training example fits max_prompt_tokens / max_target_tokens")
        plan = batches([len(p) + len(t) for p, t in pairs], cfg.batch_size, cfg.steps, cfg.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(cfg.warmup_steps, 1)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(cfg.steps - warm, 1))))
        result = TrainResult(best_step=0, best_f1=-1.0, skipped=skipped)
        best: dict = {}
        start = 0
        ckpt = _load_checkpoint(work)
        if ckpt is not None:
            set_adapter_state(model, ckpt["adapter"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["torch_rng"])
            for k, v in ckpt["result"].items():
                setattr(result, k, v)
            best, start = ckpt["best_adapter"], ckpt["step"]
            log.info("rewriter: resuming after step %d of %d", start, cfg.steps)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if start == 0:  # step 0: the untrained adapter (the base LLM), which a bad run keeps
            _evaluate(model, tokenizer, dev, rewrite, 0, result)
            best = adapter_state(model)
        if progress:
            progress(start, cfg.steps)
        for step in range(start + 1, cfg.steps + 1):
            model.train()
            ts = time.perf_counter()
            batch = collate([pairs[i] for i in plan[step - 1]], pad)
            loss = target_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            result.losses.append({"step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0],
                                  "seconds": round(time.perf_counter() - ts, 3),
                                  "tokens": int(batch["attention_mask"].sum())})
            if step % cfg.eval_every == 0 or step == cfg.steps:
                if _evaluate(model, tokenizer, dev, rewrite, step, result):
                    best = adapter_state(model)
                _save_checkpoint(work, model, opt, sched, step, result, best)
            if progress:
                progress(step, cfg.steps)
            if stop_after is not None and step - start >= stop_after:
                break
        set_adapter_state(model, best)
        model.eval()
        result.seconds = round(result.seconds + time.perf_counter() - t0, 1)
        return model, tokenizer, result
    finally:
        torch.set_num_threads(threads)


def _evaluate(model, tokenizer, dev: list[Example], rewrite: RewriteConfig, step: int, result: TrainResult) -> bool:
    """Score the dev turns at ``step``; True when it is the best step so far (ties keep the earlier step)."""
    if not dev:
        better = step > result.best_step or result.best_f1 < 0  # no dev turns: the last step
        result.best_step, result.best_f1 = (step, 0.0) if better else (result.best_step, result.best_f1)
        return better
    model.eval()
    ts = time.perf_counter()
    # Step 0 is scored as the raw utterance: the base LLM never saw this prompt and, through the output checks,
    # falls back to the utterance (generating its long answers to throw them away would cost minutes).
    outs = [ex.question for ex in dev] if step == 0 else dev_rewrites(model, tokenizer, dev, rewrite)
    scores = dev_scores(outs, dev, rewrite.output_checks)
    result.history.append({"step": step, "rewrites": "utterance" if step == 0 else "rewriter",
                           **{k: round(v, 4) for k, v in scores.items()},
                           "seconds": round(time.perf_counter() - ts, 1)})
    log.info("rewriter: step %d dev F1 %.4f (as generated %.4f, %d fallbacks)", step, scores["dev_f1"],
             scores["dev_f1_raw"], scores["dev_fallbacks"])
    if scores["dev_f1"] > result.best_f1:
        result.best_step, result.best_f1 = step, scores["dev_f1"]
        result.dev_samples = [{"id": ex.id, "question": ex.question, "rewrite": r, "human": ex.target}
                              for ex, r in zip(dev[:12], outs[:12])]
        return True
    return False


def write_history(result: TrainResult, dest: Path) -> None:
    write_json(dest, {"best_step": result.best_step, "best_f1": result.best_f1, "history": result.history,
                      "skipped": result.skipped, "seconds": result.seconds})
