"""DiSCo training: a SPLADE student reading the conversation learns the teacher's passage scores.

Lupart, Aliannejadi, Kanoulas, SIGIR 2025 (arXiv 2410.14609). Per train turn: 1 positive (qrels) and
``n_negatives`` passages sampled uniformly from the teacher run's ranks ``negative_window`` (1-based,
inclusive; positives removed), resampled each epoch; the teacher score of each passage comes from the run;
student score = dot(student(conversation), doc vector). Differences from the authors' code, on purpose:

- The document side is frozen and its vectors come from the index stage (``DOC_VECTORS``): nothing is
  re-encoded (the authors' trainer re-encodes the 17 passages of every example at every step, with the
  frozen encoder, to get the same numbers).
- Fewer window candidates than ``n_negatives``: all of them are taken, then the rest is drawn from them
  with replacement so every turn has N = 1 + n_negatives passages (the authors draw all with replacement).
- Sampling uses ``np.random.default_rng([seed, epoch])`` and checkpoints keep the torch RNG state, so a run
  resumed from its last epoch checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import get_linear_schedule_with_warmup

from core.errors import DiscoError
from core.io import atomic_path, write_json, write_parquet
from models.examples import Example, build_examples, epoch_batches
from models.losses import DistillLoss, MainLoss, Reg
from models.splade import SpladeEncoder

PathLike = str | Path


class DistillConfig(BaseModel):
    """Training settings; defaults follow the paper (AdamW 2e-5, 1% warm-up, linear decay, 10 turns per
    batch, 5 epochs, 16 negatives from ranks 11-960, 0.99 KL + 0.01 in-batch contrastive, seed 123)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.01, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = 1.0  # the authors' HF Trainer clips at 1.0 by default
    batch_size: int = Field(10, ge=1)  # turns per micro-batch
    epochs: int = Field(5, ge=1)
    grad_accumulation: int = Field(1, ge=1)
    n_negatives: int = Field(16, ge=1)
    negative_window: tuple[int, int] = (11, 960)
    # "rank11" (authors): a positive inside the window keeps its score, one outside it (ranks 1-10, past 960,
    # or not retrieved) gets the score of the window's first rank. "teacher": its own score wherever the
    # run retrieved it, else the run's lowest score.
    positive_score: Literal["rank11", "teacher"] = "rank11"
    min_relevance: int = 1
    loss: MainLoss = "kl"
    temperature: float = Field(1.0, gt=0)
    info_nce_temperature: float = Field(0.05, gt=0)
    kl_weight: float = Field(0.99, ge=0)  # weight of the main term, whichever `loss` is
    contrastive_weight: float = Field(0.01, ge=0)
    reg: Reg = "flops"
    lambda_q: float = Field(0.0, ge=0)
    reg_warmup_ratio: float = Field(0.1, ge=0, le=1)
    anti_zero_weight: float = Field(1.0, ge=0)  # the authors always add it with weight 1
    seed: int = 123
    max_length: int = Field(256, ge=8)
    # Mixed precision of the student's forward: "bf16" autocast (GPU, or a CPU with AVX-512 BF16: see
    # benchmarks/train_step.py), "fp16" autocast with loss scaling (CUDA only; the paper's setting).
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"  # "auto": cuda when available, else cpu
    max_turns: int | None = Field(None, ge=1)
    keep_checkpoints: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        lo, hi = self.negative_window
        if not 1 <= lo <= hi:
            raise ValueError(f"negative_window must be 1 <= first <= last, got {self.negative_window}")
        if self.reg == "none" and self.lambda_q > 0:
            raise ValueError("lambda_q > 0 needs reg='l1' or reg='flops'")
        return self


def _fingerprint(cfg: DistillConfig, encoder_model: str, examples: list[Example]) -> str:
    """Identity of settings + data, so that a resume never mixes two different runs."""
    settings = cfg.model_dump(mode="json", exclude={"keep_checkpoints"})
    h = hashlib.sha256(json.dumps([settings, encoder_model]).encode())
    for ex in examples:
        h.update(ex.turn_id.encode() + ex.text.encode())
        for a in (ex.positives, ex.positive_scores, ex.candidates, ex.candidate_scores):
            h.update(a.tobytes())
    return h.hexdigest()


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (each is renamed into place whole, so a present one is complete)."""
    done = [p for p in folder.glob("epoch-*") if re.fullmatch(r"epoch-\d+", p.name) and (p / "state.json").exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def _save_checkpoint(folder: Path, state: dict, student: SpladeEncoder, log: list[dict], keep: int) -> None:
    """checkpoints/epoch-<k>/: student (safetensors + tokenizer), optimizer, scheduler, RNG, step, loss log."""
    with atomic_path(folder / f"epoch-{state['epoch']}") as tmp:
        tmp.mkdir()
        student.save(tmp / "student")
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        torch.save({**state, "torch_rng": torch.get_rng_state(), "cuda_rng": cuda_rng}, tmp / "trainer_state.pt")
        pl.DataFrame(log).write_parquet(tmp / "loss.parquet")
        meta = {k: state[k] for k in ("epoch", "step", "fingerprint")}
        (tmp / "state.json").write_text(json.dumps(meta))
    for old in _checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def train_student(
    cfg: DistillConfig, encoder_model: str, turns_path: PathLike, qrels_path: PathLike, teacher_run_path: PathLike,
    doc_vectors_path: PathLike, out_dir: PathLike, progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train the student (a copy of ``encoder_model``); resume from ``out_dir/checkpoints`` if a previous call
    with the same settings and data was interrupted. ``progress(done, total)`` is called per optimizer step.

    Writes ``out_dir/student/`` (from_pretrained-loadable), ``out_dir/loss.parquet`` (one row per optimizer
    step: step, epoch, each loss part averaged over the accumulated micro-batches, total, lr) and
    ``out_dir/summary.json``; returns the summary.
    """
    t0, out = time.perf_counter(), Path(out_dir)
    examples, skipped, store = build_examples(cfg, turns_path, qrels_path, teacher_run_path, doc_vectors_path)
    if not examples:
        raise DiscoError(f"no training example among the train turns of {turns_path} (skipped: {skipped})")
    total_steps = math.ceil(math.ceil(len(examples) / cfg.batch_size) / cfg.grad_accumulation) * cfg.epochs
    fingerprint = _fingerprint(cfg, encoder_model, examples)
    ckpt = (_checkpoints(out / "checkpoints") or [None])[-1]
    if ckpt is not None and json.loads((ckpt / "state.json").read_text())["fingerprint"] != fingerprint:
        raise DiscoError(f"{out / 'checkpoints'} is from other settings or data: delete it or pick another out_dir")
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.precision == "fp16" and torch.device(device).type != "cuda":
        raise DiscoError(f"distill.precision fp16 needs a CUDA device (got {device!r}); on CPU use bf16 or fp32")
    student = SpladeEncoder(str(ckpt / "student") if ckpt else encoder_model).to(device).train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    loss_fn = DistillLoss.from_config(cfg, reg_warmup_steps=math.ceil(cfg.reg_warmup_ratio * total_steps))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")  # a no-op unless fp16
    torch.manual_seed(cfg.seed)
    start_epoch, step, log = 0, 0, []
    if ckpt is not None:  # optimizer, then scheduler: the saved lr wins over the fresh scheduler's
        state = torch.load(ckpt / "trainer_state.pt")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start_epoch, step, log = state["epoch"], state["step"], pl.read_parquet(ckpt / "loss.parquet").to_dicts()
        if progress:
            progress(step, total_steps)
    autocast = torch.autocast(torch.device(device).type, enabled=cfg.precision != "fp32",
                              dtype=torch.float16 if cfg.precision == "fp16" else torch.bfloat16)
    t_train, seen = time.perf_counter(), 0
    for epoch in range(start_epoch, cfg.epochs):
        batches = list(epoch_batches(examples, cfg, epoch))
        for g in range(0, len(batches), cfg.grad_accumulation):
            group, step, sums = batches[g : g + cfg.grad_accumulation], step + 1, {}
            for texts, rows, teacher in group:
                uniq, inverse = np.unique(rows, return_inverse=True)  # each passage once per batch
                docs = store.dense(uniq, student.vocab_size, device)
                index = torch.from_numpy(inverse.reshape(rows.shape)).to(device)
                with autocast:
                    q = student(texts, cfg.max_length)
                total, parts = loss_fn(q.float(), docs, index, torch.from_numpy(teacher).to(device), step)
                scaler.scale(total / len(group)).backward()
                sums = {k: sums.get(k, 0.0) + v / len(group) for k, v in parts.items()}
                seen += len(texts)
            if cfg.max_grad_norm:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
            log.append({"step": step, "epoch": epoch + 1, **sums, "lr": sched.get_last_lr()[0]})
            scaler.step(opt)  # opt.step(), skipped by the fp16 scaler on inf/nan gradients
            scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if progress:
                progress(step, total_steps)
        state = {"epoch": epoch + 1, "step": step, "fingerprint": fingerprint,
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "scaler": scaler.state_dict()}
        _save_checkpoint(out / "checkpoints", state, student, log, cfg.keep_checkpoints)
    train_s = time.perf_counter() - t_train
    student.save(out / "student")
    write_parquet(out / "loss.parquet", pa.Table.from_pylist(log))
    summary = {
        "examples": len(examples), "skipped": skipped, "skipped_total": sum(skipped.values()),
        "padded_negatives": sum(len(e.candidates) < cfg.n_negatives for e in examples), "steps": step,
        "epochs": cfg.epochs, "resumed_from_epoch": start_epoch, "final_loss": log[-1]["total"],
        "final_epoch_loss": float(np.mean([r["total"] for r in log if r["epoch"] == cfg.epochs])),
        "seconds": round(time.perf_counter() - t0, 3), "train_seconds": round(train_s, 3),
        "examples_per_s": round(seen / train_s, 3) if seen else 0.0, "student_dir": str(out / "student"),
    }
    write_json(out / "summary.json", summary)
    return summary
