"""Corpus encoding speed: the project's SPLADE encoder against what a user would otherwise run (issue 12).

On the first ``--passages`` MTRAG-UN passages of ``--data`` (the gold passages of ../shared/data/mtrag; the
benchmark says so and exits 0 when the folder is absent), the same SPLADE weights through:

- ``plain``: the authors' loop: fixed batches of 32 in input order, ``log1p(relu(logits)) * mask``, max over
  positions, on the full [32, L, 30522] logits (what SPLADE's and DiSCo's code do);
- ``sentence-transformers``: ``SparseEncoder(weights).encode_document`` (MLMTransformer + SpladePooling max);
- ``previous``: this project before issue 12: length-sorted batches, max over the full logits first;
- ``disco``: ``SpladeEncoder.encode`` now: length-sorted batches, chunked vocabulary projection over the unpadded
  tokens only (models/projection.py).

First the vectors are compared with ``plain`` (max |difference|, vectors identical in fp32, vectors identical after
quantisation x100 as indexed); then each is timed (``--rounds`` interleaved rounds, best kept): passages/s, tokens/s,
peak extra memory, and the fraction of the machine's measured fp32 GEMM rate reached by the useful arithmetic.
Then whole processes, start-up included: ``disco encode`` against a script running the plain loop and writing
the same JsonVectorCollection file.

    .venv/bin/python -m benchmarks.encode [--data ../shared/data/mtrag] [--passages 400] [--out runs/bench-encode]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT

MAX_LENGTH, BATCH = 256, 32


def load_passages(root: Path, n: int) -> list[tuple[str, str]]:
    from retrieval.datasets import get_reader
    from retrieval.index.encode import passage_input

    out, seen = [], set()
    for p in get_reader("mtrag-un", root).passages():
        if p.doc_id not in seen:
            seen.add(p.doc_id)
            out.append((p.doc_id, passage_input(p.title or "", p.text.strip())))
        if len(out) == n:
            break
    return out


def plain(mlm, tok, texts: list[str], batch_size: int = BATCH) -> np.ndarray:
    """The authors' SPLADE-max: fixed batches, log1p(relu) over every position, masked, then max. [N, V]."""
    import torch

    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            b = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH,
                    return_tensors="pt")
            logits = mlm(**b).logits
            rep = torch.max(torch.log1p(torch.relu(logits)) * b["attention_mask"].unsqueeze(-1), dim=1).values
            rows.append(rep.numpy())
    return np.concatenate(rows)


def previous(mlm, tok, texts: list[str], batch_size: int = BATCH) -> np.ndarray:
    """The project's encoder before issue 12: length-sorted batches, masked max over the full logits first."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), mlm.config.vocab_size), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            b = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH,
                    return_tensors="pt")
            logits = mlm(**b).logits.masked_fill_(~b["attention_mask"].unsqueeze(-1).bool(), float("-inf"))
            out[idx] = torch.log1p(torch.relu(logits.max(dim=1).values)).numpy()
    return out


def dense(vecs, vocab: int) -> np.ndarray:
    out = np.zeros((len(vecs), vocab), dtype=np.float32)
    for row, (ids, w) in zip(out, vecs):
        row[ids] = w
    return out


def compare(ref: np.ndarray, got: np.ndarray) -> dict:
    """How far ``got`` is from ``ref``: fp32 and after quantisation (round(w * 100), as indexed)."""
    qr, qg = np.rint(ref.astype(np.float64) * 100), np.rint(got.astype(np.float64) * 100)
    return {"max_abs_diff": float(np.abs(ref - got).max()),
            "identical_fp32": float(np.mean(np.all(ref == got, axis=1))),
            "identical_quantised": float(np.mean(np.all(qr == qg, axis=1))),
            "max_quantised_diff": int(np.abs(qr - qg).max())}


def useful_gflop(mlm, n_tokens: int) -> float:
    """Arithmetic a SPLADE encoder must do for ``n_tokens`` real tokens: layers + head + vocabulary projection."""
    c = mlm.config
    h, inter, v = c.hidden_size, c.intermediate_size, c.vocab_size
    per_token = c.num_hidden_layers * 2 * (4 * h * h + 2 * h * inter) + 2 * h * h + 2 * h * v
    return per_token * n_tokens / 1e9


def time_variants(variants: dict, texts: list[str], rounds: int) -> dict[str, dict]:
    from benchmarks.common import PeakRSS

    best: dict[str, dict] = {}
    for r in range(rounds):
        for name, fn in variants.items():
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                fn(texts)
                s = time.perf_counter() - t0
            prev = best.get(name)
            if prev is None or s < prev["s"]:
                best[name] = {"s": s, "peak_extra_mib": max(mem.extra_mib, prev["peak_extra_mib"] if prev else 0)}
            print(f"round {r + 1} {name}: {s:.2f} s", flush=True)
    return best


# Runs one command and reports its peak RSS: RUSAGE_CHILDREN's ru_maxrss is the largest child a process ever had,
# so each measured command gets a fresh parent of its own (else the second reports the first's peak).
_PEAK = ("import resource, subprocess, sys\n"
         "r = subprocess.run(sys.argv[1:]).returncode\n"
         "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(r)\n")


def whole_process(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", _PEAK, *cmd], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("peak_rss_kib ")][-1]
    return {"s": time.perf_counter() - t0, "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "peak_rss_mib": int(peak) / 1024}


def plain_process(input_path: str, out_dir: str) -> None:
    """The baseline as a whole program: load, plain loop, write a JsonVectorCollection file."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from models.splade import impact_vector, vocab_tokens
    from models.weights import resolve

    path = resolve("splade-tiny").path
    mlm, tok = AutoModelForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    rows = [json.loads(line) for line in open(input_path, encoding="utf-8")]
    reps = plain(mlm, tok, [r["contents"] for r in rows])
    tokens = vocab_tokens(tok)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(out_dir) / "docs-00000.jsonl", "w", encoding="utf-8") as f:
        for r, rep in zip(rows, reps):
            ids = np.nonzero(rep)[0]
            f.write(json.dumps({"id": r["id"], "contents": "", "vector": impact_vector(ids, rep[ids], tokens)}) + "\n")


def markdown(result: dict) -> str:
    m, rows = result["machine"], result["rows"]
    lines = [f"{result['passages']} MTRAG-UN passages, {result['tokens_mean']:.0f} tokens on average (max "
             f"{MAX_LENGTH}); SPLADE-tiny fp32; {m['cpu']}, {m['cores']} cores ({m.get('isa', '')}), torch threads "
             f"{m['torch_threads']}, load average {m['load_avg_1m']:.1f} at start; measured fp32 GEMM rate "
             f"{result['gemm_gflops']:.0f} GFLOP/s.", "",
             "| encoder | passages/s | tokens/s | x plain | x sentence-transformers | peak extra MiB | "
             "% of GEMM rate | identical fp32 | identical quantised | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['encoder']} | {r['passages_s']:.1f} | {r['tokens_s']:.0f} | {r['x_plain']:.2f} | "
                     f"{r['x_st']:.2f} | {r['peak_extra_mib']:.0f} | {r['pct_peak']:.0f}% | "
                     f"{r['identical_fp32']:.1%} | {r['identical_quantised']:.1%} | {r['max_abs_diff']:.1e} |")
    if "process" in result:
        p = result["process"]
        lines += ["", "| whole process (start-up included) | s | CPU s | peak RSS MiB |", "|---|---|---|---|"]
        for name, v in p["runs"].items():
            lines.append(f"| {name} | {v['s']:.1f} | {v['cpu_s']:.1f} | {v['peak_rss_mib']:.0f} |")
        lines.append(f"\n`disco encode` / plain program: {p['speedup']:.2f}x faster; output files: "
                     f"{p['identical_lines']:.1%} of lines identical.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mtrag")
    parser.add_argument("--passages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-encode"))
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process comparison")
    parser.add_argument("--plain-process", nargs=2, metavar=("INPUT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_process:
        return plain_process(*args.plain_process)
    if not args.data.exists():
        print(f"skipped: {args.data} not found (the MTRAG-UN data of ../shared/data)")
        return
    import torch
    from sentence_transformers import SparseEncoder

    from core.io import write_json, write_text
    from benchmarks.common import describe, gemm_gflops
    from models.splade import SpladeEncoder
    from models.weights import resolve

    passages = load_passages(args.data, args.passages)
    texts = [t for _, t in passages]
    enc = SpladeEncoder("splade-tiny", frozen=True)
    mlm, tok, vocab = enc.mlm, enc.tokenizer, enc.vocab_size
    st = SparseEncoder(resolve("splade-tiny").path, device="cpu")
    st.max_seq_length = MAX_LENGTH
    n_tokens = int(sum(len(x) for x in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]))
    variants = {
        "plain (authors' loop)": lambda t: plain(mlm, tok, t),
        "sentence-transformers SparseEncoder": lambda t: st.encode_document(t, batch_size=BATCH,
                                                                            convert_to_tensor=True),
        "previous (before issue 12)": lambda t: previous(mlm, tok, t),
        "disco (SpladeEncoder.encode)": lambda t: enc.encode(t, MAX_LENGTH, BATCH),
    }
    # equality first, on every passage
    ref = plain(mlm, tok, texts)
    got = {"plain (authors' loop)": ref,
           "sentence-transformers SparseEncoder": torch.stack(
               [r.to_dense() for r in st.encode_document(texts, batch_size=BATCH, convert_to_tensor=True)]).numpy(),
           "previous (before issue 12)": previous(mlm, tok, texts),
           "disco (SpladeEncoder.encode)": dense(enc.encode(texts, MAX_LENGTH, BATCH), vocab)}
    checks = {name: compare(ref, v) for name, v in got.items()}
    print(json.dumps(checks, indent=1), flush=True)
    for fn in variants.values():  # warm-up
        fn(texts[:BATCH])
    gemm = gemm_gflops()
    times = time_variants(variants, texts, args.rounds)
    gflop = useful_gflop(mlm, n_tokens)
    base, st_s = times["plain (authors' loop)"]["s"], times["sentence-transformers SparseEncoder"]["s"]
    rows = [{"encoder": name, "s": t["s"], "passages_s": len(texts) / t["s"], "tokens_s": n_tokens / t["s"],
             "x_plain": base / t["s"], "x_st": st_s / t["s"], "peak_extra_mib": t["peak_extra_mib"],
             "pct_peak": 100 * gflop / t["s"] / gemm, **checks[name]} for name, t in times.items()]
    result = {"passages": len(texts), "tokens_mean": n_tokens / len(texts), "gemm_gflops": gemm,
              "useful_gflop_per_passage": gflop / len(texts), "machine": describe(), "rows": rows}
    if not args.no_process:
        result["process"] = compare_processes(passages, args.out)
    md = markdown(result)
    print(md)
    write_text(args.out / "encode.md", md)
    write_json(args.out / "encode.json", result)


def compare_processes(passages: list[tuple[str, str]], out: Path) -> dict:
    """``disco encode`` and the plain program, each a fresh process on the same JSONL."""
    import shutil

    work = out / "process"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = work / "passages.jsonl"
    data.write_text("".join(json.dumps({"id": i, "contents": t}) + "\n" for i, t in passages), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = {
        "plain program (transformers loop)": whole_process(
            [sys.executable, "-m", "benchmarks.encode", "--plain-process", str(data), str(work / "plain")], env),
        "disco encode": whole_process(
            [sys.executable, "-m", "disco.cli", "encode", "--input", str(data), "--output", str(work / "disco"),
             "--no-progress", "--batch-size", str(BATCH), "--max-length", str(MAX_LENGTH)], env),
    }
    a = (work / "plain" / "docs-00000.jsonl").read_text().splitlines()
    b = (work / "disco" / "docs-00000.jsonl").read_text().splitlines()
    return {"runs": runs, "speedup": runs["plain program (transformers loop)"]["s"] / runs["disco encode"]["s"],
            "identical_lines": float(np.mean([x == y for x, y in zip(a, b)])) if len(a) == len(b) else 0.0}


if __name__ == "__main__":
    main()
