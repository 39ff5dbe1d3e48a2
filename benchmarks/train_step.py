"""Training-step cost of DiSCo distillation: precomputed doc vectors (this project) vs re-encoding (the authors).

Each step trains the student query encoder on one batch of real examples (models.distill.build_examples and
epoch_batches: `--batch-size` turns, 1 positive + 16 negatives each, teacher run "human") from an existing
pipeline output folder. Variants, each in its own process (fresh weights, same batches, same seed):

- re-encode: the authors' trainer. The frozen document encoder (eval, no_grad) encodes the 1 + 16 passages of
  every example (max 256 tokens, one forward for the whole batch), then the student step.
- precomputed: this project. Passage vectors are read from the index stage's doc_vectors.parquet
  (DocStore.dense over the batch's distinct passages), then the same student step.
- precomputed + bf16: as precomputed, with the student forward under torch.autocast(cpu, bfloat16), as
  train_student does with precision "bf16".
- sentence-transformers: the same weights as a ``SparseEncoder`` trained by its ``SpladeLoss`` +
  ``SparseDistillKLDivLoss`` on the same batches and teacher scores (:func:`st_student`): what a user of that
  library would run. It computes something else: the 1 + 16 passages of every example are encoded by the
  student with gradients (the document side trains too), the loss is KL over each example's own passages only
  (no in-batch contrastive term), and its query regulariser replaces DiSCo's FLOPS term.

Student step = forward + DistillLoss + backward + grad clipping + AdamW (constant lr, no scheduler). Reported:
median s/step over `--steps` timed steps (after `--warmup-steps` untimed ones), examples/s, speed-up against
re-encode measured in the same run, the doc-side share, peak RSS of each variant's process, and how far the
losses of bf16 (and of re-encode) drift from precomputed fp32 over the same steps from the same init.

    .venv/bin/python -m benchmarks.train_step --run-dir runs/demo --out runs/bench-train-step
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from core.run_record import RunRecord

VARIANTS = {"re-encode": ("reencode", "fp32"), "precomputed": ("precomputed", "fp32"),
            "precomputed + bf16": ("precomputed", "bf16"), "sentence-transformers": ("st", "fp32")}
REFERENCE = "precomputed"  # the losses of the others are compared with this one's
N_NEGATIVES, DOC_MAX_LENGTH, QUERY_MAX_LENGTH = 16, 256, 256


def stage_files(run_dir: Path) -> dict[str, Path]:
    """The stage outputs of a `disco run` folder: from run.json when present (the stages of its last run),
    else the single match of stages/<stage>-*/<file>."""
    wanted = {"turns": ("ingest", "turns.parquet"), "qrels": ("ingest", "qrels.parquet"),
              "corpus": ("ingest", "corpus.parquet"), "doc_vectors": ("index", "doc_vectors.parquet"),
              "runs": ("teacher", "runs.parquet")}
    stages = RunRecord.read(run_dir).stages if RunRecord.path(run_dir).exists() else {}
    files = {}
    for name, (stage, file) in wanted.items():
        if stage in stages and (Path(stages[stage].dir) / file).exists():
            files[name] = Path(stages[stage].dir) / file
            continue
        found = sorted(run_dir.glob(f"stages/{stage}-*/{file}"))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} (ambiguous, and no run.json naming one)"
            raise SystemExit(f"{run_dir}: {what} stages/{stage}-*/{file}; run `disco run demo --out {run_dir}` first")
        files[name] = found[0]
    return files


def run_variant(name: str, files: dict[str, Path], opts: dict) -> dict:
    """One variant in this (child) process: per-step seconds, doc-side seconds and loss, plus peak RSS."""
    import numpy as np
    import polars as pl
    import torch

    from models.distill import DistillConfig
    from models.conversation import format_conversation
    from models.examples import Source, build_examples, epoch_batches
    from models.losses import DistillLoss
    from models.splade import SpladeEncoder
    from retrieval.index.encode import passage_input

    docs_from, precision = VARIANTS[name]
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    cfg = DistillConfig(**{**opts["distill"], "batch_size": opts["batch_size"], "n_negatives": N_NEGATIVES})
    with tempfile.TemporaryDirectory() as tmp:
        run = pl.read_parquet(files["runs"]).filter(pl.col("system") == "human")
        run.write_parquet(Path(tmp) / "human.parquet")
        src = Source(files["turns"], files["qrels"], Path(tmp) / "human.parquet", files["doc_vectors"])
        examples, _, store, _ = build_examples(cfg, [src], format_conversation)
    student = SpladeEncoder(opts["model"]).train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = DistillLoss.from_config(cfg, reg_warmup_steps=0)
    if docs_from == "st":
        student, st_loss = st_student(opts["model"], cfg)
        opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if docs_from in ("reencode", "st"):
        doc_encoder = SpladeEncoder(opts["model"], frozen=True) if docs_from == "reencode" else None
        corpus = pl.read_parquet(files["corpus"]).filter(pl.col("doc_id").is_in(list(store.row)))
        text_of = {d: passage_input(t, x) for d, t, x in corpus.select("doc_id", "title", "text").iter_rows()}
        row_text = [""] * len(store.row)
        for doc_id, row in store.row.items():
            row_text[row] = text_of[doc_id]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    torch.manual_seed(cfg.seed)  # dropout: the same masks in every variant
    total_steps = opts["warmup_steps"] + opts["steps"]
    batches = (b for epoch in range(total_steps) for b in epoch_batches(examples, cfg, epoch))
    log = []
    for step in range(1, total_steps + 1):
        texts, rows, teacher = next(batches)
        t0 = time.perf_counter()
        if docs_from == "st":  # sentence-transformers' own step: its SpladeLoss encodes queries and passages
            features = [student.tokenize(texts)] + [student.tokenize([row_text[r] for r in rows[:, j]])
                                                    for j in range(rows.shape[1])]
            total = sum(st_loss(features, torch.from_numpy(teacher).float()).values())
            total.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            log.append({"step": step, "s": time.perf_counter() - t0, "doc_s": 0.0, "loss": float(total.detach())})
            continue
        uniq, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        if docs_from == "reencode":  # every passage of every example, as the authors' trainer does
            with torch.no_grad():
                reps = doc_encoder([row_text[r] for r in rows.ravel()], DOC_MAX_LENGTH)
            docs = reps[torch.from_numpy(first)]  # same rows as DocStore.dense(uniq): the loss stays comparable
        else:
            docs = store.dense(uniq, student.vocab_size, "cpu")
        t_doc = time.perf_counter() - t0
        with autocast:
            q = student(texts, QUERY_MAX_LENGTH)
        index = torch.from_numpy(inverse.reshape(rows.shape))
        total, _ = loss_fn(q.float(), docs, index, torch.from_numpy(teacher), step)
        total.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        log.append({"step": step, "s": time.perf_counter() - t0, "doc_s": t_doc, "loss": float(total.detach())})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": name, "log": log, "peak_rss_mib": round(peak_mib, 1), "threads": torch.get_num_threads(),
            "examples": len(examples), "batch_size": cfg.batch_size}


def st_student(model: str, cfg):
    """The same student weights as sentence-transformers' ``SparseEncoder`` (MLMTransformer + SpladePooling max),
    trained by its ``SpladeLoss`` around ``SparseDistillKLDivLoss`` on the teacher's scores of the example's 1 + 16
    passages (the temperature and lambda_q of DiSCo's config; no document regulariser, as DiSCo's documents are
    frozen). Unlike DiSCo, it encodes the passages with the student itself and backpropagates through them."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import SparseDistillKLDivLoss, SpladeLoss

    from models.weights import resolve

    st = SparseEncoder(resolve(model).path, device="cpu")
    st.max_seq_length = DOC_MAX_LENGTH
    st.train()
    loss = SpladeLoss(st, loss=SparseDistillKLDivLoss(st, temperature=cfg.temperature),
                      document_regularizer_weight=0.0, query_regularizer_weight=cfg.lambda_q)
    return st, loss


def summarise(results: dict[str, dict], warmup_steps: int, baseline: str = "re-encode") -> list[dict]:
    """One table row per variant from the timed steps (those after the warm-up)."""
    med = {k: statistics.median(r["s"] for r in v["log"][warmup_steps:]) for k, v in results.items()}
    rows = []
    for name, res in results.items():
        doc = statistics.median(r["doc_s"] for r in res["log"][warmup_steps:])
        rows.append({"variant": name, "s/step": round(med[name], 4),
                     "examples/s": round(res["batch_size"] / med[name], 2),
                     "speed-up vs re-encode": round(med[baseline] / med[name], 2) if baseline in med else None,
                     "doc side s/step": round(doc, 4), "peak RSS MiB": res["peak_rss_mib"]})
    return rows


def loss_difference(losses: list[float], reference: list[float]) -> dict:
    """Max absolute and relative difference over the common steps, and the first step's (same weights)."""
    pairs = list(zip(losses, reference))
    abs_d = [abs(a - b) for a, b in pairs]
    rel_d = [d / max(abs(b), 1e-12) for d, (_, b) in zip(abs_d, pairs)]
    return {"steps": len(pairs), "first_step_abs": abs_d[0], "max_abs": max(abs_d), "max_rel": max(rel_d),
            "reference_mean_loss": statistics.fmean(reference)}


def markdown(rows: list[dict], diffs: dict[str, dict], context: str) -> str:
    cols = list(rows[0])
    lines = [context, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", f"Loss against `{REFERENCE}` (fp32), same init, batches and dropout seed:", "",
              "| variant | steps | step-1 abs diff | max abs diff | max rel diff | mean loss (reference) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {d['steps']} | {d['first_step_abs']:.2e} | {d['max_abs']:.2e} | {d['max_rel']:.2e} | "
              f"{d['reference_mean_loss']:.4f} |" for k, d in diffs.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, type=Path, help="a `disco run` output folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    if args.steps < 1 or args.warmup_steps < 0:
        parser.error("--steps must be >= 1 and --warmup-steps >= 0")

    files = stage_files(args.run_dir)
    config = RunRecord.read(args.run_dir).config if RunRecord.path(args.run_dir).exists() else {}
    opts = {"steps": args.steps, "warmup_steps": args.warmup_steps, "batch_size": args.batch_size,
            "threads": args.threads, "distill": config.get("distill", {}),
            "model": config.get("encoder", {}).get("model", "splade-tiny")}
    results = {}
    for name in args.only:  # one fresh process each: clean peak RSS, no warm caches shared between variants
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            results[name] = pool.submit(run_variant, name, files, opts).result()
        print(f"{name}: done ({results[name]['peak_rss_mib']} MiB peak)", flush=True)

    rows = summarise(results, args.warmup_steps)
    ref = [r["loss"] for r in results[REFERENCE]["log"]] if REFERENCE in results else None
    diffs = {k: loss_difference([r["loss"] for r in v["log"]], ref) for k, v in results.items()
             if ref and k not in (REFERENCE, "sentence-transformers")}  # the latter computes another loss
    first = next(iter(results.values()))
    context = (f"Train step on {args.run_dir} ({opts['model']}, {first['examples']} train examples, batch "
               f"{args.batch_size} x (1 + {N_NEGATIVES}) passages, teacher human), {args.steps} timed steps after "
               f"{args.warmup_steps} warm-up, {first['threads']} torch threads. Speed-up = re-encode s/step / "
               f"variant s/step; doc side = re-encoding or DocStore.dense; peak RSS = each variant's process.")
    md = markdown(rows, diffs, context)
    from core.io import write_json, write_text

    write_text(args.out / "train_step.md", md)
    write_json(args.out / "train_step.json",
               {"rows": rows, "loss_difference": diffs, "options": {k: v for k, v in opts.items() if k != "distill"},
                "files": {k: str(v) for k, v in files.items()}, "runs": results})
    print(md)


if __name__ == "__main__":
    main()
