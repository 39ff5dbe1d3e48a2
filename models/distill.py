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
- Training length can be given in optimizer steps (``steps``): small datasets need a number of updates, not a
  number of passes. With dev turns, the student is scored on them after every epoch (:mod:`models.selection`)
  and the best epoch is kept (epoch 0, the untrained student, included), optionally stopping early; then,
  with ``soup_seeds``, the same setting is trained once per extra seed from the same initial weights and the
  best epochs are averaged greedily on dev (a model soup, :mod:`models.soup`); then, with ``interpolate``, the
  best mix of its weights with the starting encoder's (WiSE-FT, :mod:`models.interpolation`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from transformers import get_linear_schedule_with_warmup

from core.errors import DiscoError
from core.io import atomic_path, write_json, write_parquet
from models.cpu import warn_if_slow_bf16
from models.distill_config import DistillConfig
from models.examples import DocStore, Example, Source, build_examples, epoch_batches
from models.interpolation import choose_interpolation
from models.losses import DistillLoss
from models.selection import DevSet, PooledDev, Rule, encode_fn
from models.soup import greedy_soup
from models.splade import SpladeEncoder
from models.student import StudentCard

PathLike = str | Path


def _fingerprint(cfg: DistillConfig, encoder_model: str, examples: list[Example], init_seed: int) -> str:
    """Identity of settings + data, so that a resume never mixes two different runs. ``soup_seeds`` is not part
    of it: the run with ``seed`` is the same with or without a soup (its ingredients train in folders of their
    own); the seed of the initial weights is, when it is not ``seed`` (a soup ingredient's)."""
    settings = cfg.model_dump(mode="json", exclude={"keep_checkpoints", "soup_seeds"})
    ident = [settings, encoder_model] + ([init_seed] if init_seed != cfg.seed else [])
    h = hashlib.sha256(json.dumps(ident).encode())
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
    cfg: DistillConfig, encoder_model: str, sources: list[Source], out_dir: PathLike, *, max_length: int = 256,
    quant_scale: int = 100, k: int = 1000, dev: Source | list[Source] | None = None,
    progress: Callable[[int, int], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
    init_seed: int | None = None,
) -> dict:
    """Train the student (a copy of ``encoder_model``) on the train turns of every source; resume from
    ``out_dir/checkpoints`` if a previous call with the same settings and data was interrupted.

    ``dev``: the source(s) whose ``dev`` turns select the best epoch (``cfg.select_on_dev``; several are scored as
    one pooled set, every dev turn counting once; the test split is never read). ``progress(done, total)`` is
    called per optimizer step, ``on_epoch(row)`` after each epoch with its mean loss and dev measures. Writes
    :data:`OUTPUTS` in ``out_dir``: ``student/`` (from_pretrained-loadable, with its ``disco_student.json``
    card), ``loss.parquet`` (one row per optimizer step: step, epoch, each loss part averaged over the
    accumulated micro-batches, total, lr), ``dev.parquet`` (one row per epoch) and ``summary.json``; returns the
    summary. :func:`discard_scratch` then removes what only a resume needs.

    ``cfg.soup_seeds`` (with dev turns): after this run, the same setting trains once per extra seed in
    ``out_dir/soup/seed-<s>/``, from this run's initial weights, and the greedy soup of the best epochs
    (:mod:`models.soup`) replaces the best epoch's student (the progress then counts every run's steps).
    ``init_seed``: the seed in force while the initial weights are built (default ``cfg.seed``; the
    ingredients get the main run's), sampling and dropout then follow ``cfg.seed``.
    """
    t0, out = time.perf_counter(), Path(out_dir)
    card = StudentCard(input=cfg.input, max_length=max_length, quant_scale=quant_scale, base_model=encoder_model,
                       teacher=cfg.learn_from)
    side = cfg.input.truncation_side()
    examples, skipped, store, sampling = build_examples(cfg, sources, card.text, k)
    if not examples:
        raise DiscoError(f"no training example among the train turns of {[str(s.turns) for s in sources]} "
                         f"(skipped: {skipped})")
    per_epoch = math.ceil(math.ceil(len(examples) / cfg.batch_size) / cfg.grad_accumulation)
    total_steps = cfg.steps or per_epoch * cfg.epochs
    epochs = math.ceil(total_steps / per_epoch)
    init_seed = cfg.seed if init_seed is None else init_seed
    fingerprint = _fingerprint(cfg, encoder_model, examples, init_seed)
    ckpt = (_checkpoints(out / "checkpoints") or [None])[-1]
    if ckpt is not None and json.loads((ckpt / "state.json").read_text())["fingerprint"] != fingerprint:
        raise DiscoError(f"{out / 'checkpoints'} is from other settings or data: delete it or pick another out_dir")
    device = _device(cfg)
    student = _initial(str(ckpt / "student") if ckpt else encoder_model, cfg.extra_layers, init_seed)
    student = student.to(device).train()
    devset, rule, last_turn_terms = _dev(cfg, dev, card, student.vocab_size, encoder_model, max_length)
    runs = 1 + len(cfg.soup_seeds) if devset is not None else 1  # trainings the progress counts (soup: several)
    report = progress if progress is None or runs == 1 else (lambda d, n: progress(d, runs * n))
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    loss_fn = DistillLoss.from_config(cfg, reg_warmup_steps=math.ceil(cfg.reg_warmup_ratio * total_steps))
    targets = _target_vectors(examples, encoder_model, max_length) if loss_fn.needs_targets else None
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")  # a no-op unless fp16
    torch.manual_seed(cfg.seed)  # sampling is seeded by cfg.seed too (models/examples.py: epoch_batches)
    start_epoch, step, log, curve = _resume(ckpt, opt, sched, scaler) if ckpt is not None else (0, 0, [], [])
    if report and ckpt is not None:
        report(step, total_steps)
    autocast = torch.autocast(torch.device(device).type, enabled=cfg.precision != "fp32",
                              dtype=torch.float16 if cfg.precision == "fp16" else torch.bfloat16)
    encode = encode_fn(student, max_length, side)
    if devset is not None and not curve:  # the untrained student: epoch 0 of the dev curve
        curve.append({"epoch": 0, "step": 0, "loss": None, **devset.score(encode, quant_scale)})
    t_train, seen = time.perf_counter(), 0
    for epoch in range(start_epoch, epochs):
        if _stop_early(curve, cfg, rule):
            break
        first = len(log)
        for group in _groups(list(epoch_batches(examples, cfg, epoch, with_index=True)), cfg.grad_accumulation):
            if step >= total_steps:
                break
            step += 1
            sums, n = _accumulate(student, group, store, targets, loss_fn, scaler, autocast, device, step,
                                  max_length, side)
            seen += n
            if cfg.max_grad_norm:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
            log.append({"step": step, "epoch": epoch + 1, **sums, "lr": sched.get_last_lr()[0]})
            scaler.step(opt)  # opt.step(), skipped by the fp16 scaler on inf/nan gradients
            scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if report:
                report(step, total_steps)
        row = {"epoch": epoch + 1, "step": step,
               "loss": float(np.mean([r["total"] for r in log[first:]])) if len(log) > first else None}
        if devset is not None:
            row.update(devset.score(encode, quant_scale))
            if rule.best(curve + [row])["epoch"] == epoch + 1:
                student.save(out / "best")  # atomically replaced: always one whole best student
        curve.append(row)
        if on_epoch:
            on_epoch(row)
        state = {"epoch": epoch + 1, "step": step, "fingerprint": fingerprint, "curve": curve,
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict()}
        _save_checkpoint(out / "checkpoints", state, student, log, cfg.keep_checkpoints)
    train_s = time.perf_counter() - t_train
    best = rule.best(curve) if devset is not None else None
    soup_rows, kept = [], None
    if best is None:
        start = student
    elif runs > 1:
        opt.state.clear()  # the ingredients train next: the main run's optimizer state and weights leave the device
        student.cpu()

        def score(s: SpladeEncoder) -> dict[str, float]:
            return devset.score(encode_fn(s, max_length, side), quant_scale)

        def ingredient(seed: int, i: int) -> dict:
            bar = None if progress is None else (lambda d, n: progress(i * n + d, runs * n))
            return train_student(cfg.model_copy(update={"seed": seed, "soup_seeds": [], "interpolate": [1.0]}),
                                 encoder_model, sources, out / "soup" / f"seed-{seed}", max_length=max_length,
                                 quant_scale=quant_scale, k=k, dev=dev, progress=bar, init_seed=cfg.seed)

        start, soup_rows, kept = _soup(cfg, best["epoch"], out, encoder_model, ingredient, score, rule)
    else:
        start = SpladeEncoder(str(out / "best")) if best["epoch"] else None
    chosen, alpha, mixes = _choose(start, best, encoder_model, cfg, devset, rule, max_length, side, quant_scale)
    chosen.save(out / "student")
    card.extra = {"best_epoch": best["epoch"] if best else None, "steps": step, "interpolation_alpha": alpha}
    if kept is not None:
        card.extra["soup_seeds"] = kept
    card.save(out / "student")
    write_parquet(out / "loss.parquet", pa.Table.from_pylist(log))
    write_parquet(out / "dev.parquet", pa.Table.from_pylist(curve) if curve else pa.table({"epoch": []}))
    summary = {
        "examples": len(examples), "pseudo_positive_examples": sum(e.pseudo for e in examples),
        "skipped": skipped, "skipped_total": sum(skipped.values()), "sampling": sampling,
        "padded_negatives": sum(len(e.candidates) < cfg.n_negatives for e in examples), "steps": step,
        "steps_per_epoch": per_epoch, "epochs": curve[-1]["epoch"] if curve else epochs,
        "resumed_from_epoch": start_epoch, "final_loss": log[-1]["total"] if log else None,
        "dev_turns": len(devset.turn_ids) if devset else 0, "dev_ranked": devset.ranked if devset else None,
        "best_epoch": best["epoch"] if best else None,
        "best_dev": {m: best[m] for m in DEV_MEASURES} if best else None,
        "last_turn_dev_terms": last_turn_terms, "max_query_terms": rule.max_terms, "extra_layers": cfg.extra_layers,
        "interpolation_alpha": alpha, "interpolation_dev": mixes, "soup_seeds": kept, "soup_dev": soup_rows,
        "seconds": round(time.perf_counter() - t0, 3), "train_seconds": round(train_s, 3),
        "examples_per_s": round(seen / train_s, 3) if seen else 0.0, "student_dir": str(out / "student"),
    }
    write_json(out / "summary.json", summary)
    return summary


# What train_student leaves in its folder for others to read, and what only a resume needs.
OUTPUTS = {"student": "student", "loss": "loss.parquet", "dev": "dev.parquet", "summary": "summary.json"}
SCRATCH = ("checkpoints", "best", "search", "soup")


def discard_scratch(out_dir: PathLike) -> None:
    """Remove the checkpoints, the best epoch's copy, the search runs (models/search.py) and the soup's
    ingredient runs of a finished run."""
    for name in SCRATCH:
        shutil.rmtree(Path(out_dir) / name, ignore_errors=True)


def _device(cfg: DistillConfig) -> str:
    """``cfg.device`` resolved and checked against this machine and ``cfg.precision``."""
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise DiscoError(f"distill.device {device!r}: no CUDA device here (torch {torch.__version__}); "
                         f"use distill.device=auto or cpu")
    if cfg.precision == "fp16" and torch.device(device).type != "cuda":
        raise DiscoError(f"distill.precision fp16 needs a CUDA device (got {device!r}); on CPU use bf16 or fp32")
    if cfg.precision == "bf16" and torch.device(device).type == "cpu":
        warn_if_slow_bf16("distill", "distill.precision=fp32")
    return device


def _dev(cfg: DistillConfig, dev: Source | list[Source] | None, card: StudentCard, vocab: int, encoder_model: str,
         max_length: int) -> tuple[DevSet | PooledDev | None, Rule, float | None]:
    """The dev turns (one set, or several pooled), the rule that compares epochs on them (the selection metric
    within the query-term budget, ``cfg.max_terms_ratio`` times the last turn's dev terms) and those terms."""
    rule = Rule(cfg.selection_metric)
    if dev is None or not cfg.select_on_dev:
        return None, rule, None
    sets = [DevSet.load(d.turns, d.qrels, d.vectors, d.run, card.text, vocab, card.quant_scale, cfg.min_relevance)
            for d in (dev if isinstance(dev, list) else [dev])]
    sets = [d for d in sets if d is not None]
    devset = sets[0] if len(sets) == 1 else PooledDev(sets) if sets else None
    if devset is None or cfg.max_terms_ratio is None:
        return devset, rule, None
    frozen = SpladeEncoder(encoder_model, frozen=True)
    terms = devset.question_terms(encode_fn(frozen, max_length, cfg.input.truncation_side()), card.quant_scale)
    return devset, Rule(cfg.selection_metric, cfg.max_terms_ratio * terms), terms


def _resume(ckpt: Path, opt, sched, scaler) -> tuple[int, int, list[dict], list[dict]]:
    """Restore optimizer, scheduler (its saved lr wins over the fresh one's), scaler and RNG from ``ckpt``;
    return (epoch, step, loss log, dev curve) to continue from."""
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)  # tensors and plain data only
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epoch"], state["step"], pl.read_parquet(ckpt / "loss.parquet").to_dicts(), state.get("curve", [])


def _groups(batches: list, size: int) -> list[list]:
    """Micro-batches grouped by ``size`` (gradient accumulation): one group per optimizer step."""
    return [batches[g : g + size] for g in range(0, len(batches), size)]


def _accumulate(student: SpladeEncoder, group: list, store: DocStore, targets: DocStore | None, loss_fn: DistillLoss,
                scaler, autocast, device: str, step: int, max_length: int, side: str) -> tuple[dict, int]:
    """Forward and backward of one optimizer step's micro-batches; returns each loss part averaged over them and
    the number of turns seen."""
    sums: dict[str, float] = {}
    seen = 0
    for texts, rows, teacher, which in group:
        uniq, inverse = np.unique(rows, return_inverse=True)  # each passage once per batch
        docs = store.dense(uniq, student.vocab_size, device)
        index = torch.from_numpy(inverse.reshape(rows.shape)).to(device)
        with autocast:
            q = student(texts, max_length, side)
        target = targets.dense(which, student.vocab_size, device) if targets is not None else None
        total, parts = loss_fn(q.float(), docs, index, torch.from_numpy(teacher).to(device), step, target)
        scaler.scale(total / len(group)).backward()
        sums = {k: sums.get(k, 0.0) + v / len(group) for k, v in parts.items()}
        seen += len(texts)
    return sums, seen


def _initial(name: str, extra_layers: int, seed: int) -> SpladeEncoder:
    """The student as it starts from ``name``, built with the CPU random generator seeded by ``seed`` (a new
    residual branch is built: today its weights draw nothing random, see models/branch.py, but every soup
    ingredient is thus built as the main run is, whatever its own seed); the generator's state is restored."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return SpladeEncoder(name, extra_layers=extra_layers)


def _soup(cfg: DistillConfig, best_epoch: int, out: Path, encoder_model: str, ingredient: Callable[[int, int], dict],
          score: Callable[[SpladeEncoder], dict], rule: Rule) -> tuple[SpladeEncoder | None, list[dict], list[int]]:
    """The greedy soup (:func:`models.soup.greedy_soup`) of this run's best epoch (``out/best``, or the start
    weights when ``best_epoch`` is 0) and of ``ingredient(seed, i)``'s runs for the ``i``-th of ``cfg.soup_seeds``
    (a summary; their student is their best epoch's). Returns the soup (None when it holds only start weights:
    the untrained encoder, as without a soup), one row per ingredient tried (with its ``epoch``) and the seeds
    kept."""
    made = [(cfg.seed, best_epoch, out / "best")]
    for i, seed in enumerate(cfg.soup_seeds, 1):
        made.append((seed, ingredient(seed, i)["best_epoch"], out / "soup" / f"seed-{seed}" / "student"))
    soup = _initial(encoder_model, cfg.extra_layers, cfg.seed)  # also the start weights of an epoch-0 ingredient
    start = {k: v.detach().clone() for k, v in soup.state_dict().items()}
    states = [(seed, SpladeEncoder(str(path)).state_dict() if epoch else start) for seed, epoch, path in made]
    kept, rows = greedy_soup(soup, states, score, rule)
    epochs = {seed: epoch for seed, epoch, _ in made}
    rows = [{"seed": r["seed"], "epoch": epochs[r["seed"]], **r} for r in rows]
    return (soup if any(epochs[s] for s in kept) else None), rows, kept


def _choose(start: SpladeEncoder | None, best: dict | None, encoder_model: str, cfg: DistillConfig, devset,
            rule: Rule, max_length: int, side: str, quant_scale: int) -> tuple[SpladeEncoder, float | None, list]:
    """The student to keep: ``start`` (the best dev epoch's, or the soup of the seeds' best epochs; the last
    epoch without dev turns; None: the untrained encoder, when no epoch beat it), then its dev-best mix with the
    starting encoder (``cfg.interpolate``, WiSE-FT)."""
    if best is None:
        return start, None, []
    if start is None:  # no epoch beat the untrained student on dev: keep the untrained one, and say so
        return SpladeEncoder(encoder_model), None, []
    chosen = start
    if len(cfg.interpolate) == 1:
        return chosen, None, []
    alpha, mixes = choose_interpolation(
        chosen, encoder_model, cfg.interpolate,
        lambda s: devset.score(encode_fn(s, max_length, side), quant_scale), rule)
    return chosen, alpha, mixes


DEV_MEASURES = ("RR@10", "nDCG@3", "R@10", "R@100", "terms", "flops")


def _target_vectors(examples: list[Example], encoder_model: str, max_length: int) -> DocStore:
    """Representation distillation's targets: per example, the frozen encoder's vector of its teachers'
    rewrites (their mean when several teachers are fused: the vector whose scores are the mean scores)."""
    frozen = SpladeEncoder(encoder_model, frozen=True)
    texts = sorted({t for ex in examples for t in ex.targets})
    vec = dict(zip(texts, frozen.encode(texts, max_length)))
    store = DocStore()
    rows, offsets, terms, weights = {}, [0], [], []
    for i, ex in enumerate(examples):
        acc: dict[int, float] = {}
        for t in ex.targets:
            for term, w in zip(*vec[t]):
                acc[int(term)] = acc.get(int(term), 0.0) + float(w) / len(ex.targets)
        rows[str(i)] = i
        terms += sorted(acc)
        weights += [acc[k] for k in sorted(acc)]
        offsets.append(len(terms))
    store.row, store.offsets = rows, np.asarray(offsets, np.int64)
    store.terms, store.weights = np.asarray(terms, np.int64), np.asarray(weights, np.float32)
    return store


def _stop_early(curve: list[dict], cfg: DistillConfig, rule: Rule) -> bool:
    """``cfg.patience`` epochs since the best one (by ``rule``: the metric within the query-term budget)."""
    if cfg.patience is None or len(curve) < 2 or cfg.selection_metric not in curve[-1]:
        return False
    return curve[-1]["epoch"] - rule.best(curve)["epoch"] >= cfg.patience
