"""Ablations of the distillation (issues 4, 8, 25): teachers, losses, inputs, capacity, and a query-sparsity sweep.

Runs the pipeline once per variant in one output folder, so the ingest, rewrite, index and teacher stages are
computed once and served from cache afterwards; only distill and evaluate rerun. Every variant is evaluated on a
dev split carved out of the train conversations (``--dev-fraction``; the test conversations are unchanged), so
settings are chosen without looking at the test split. Writes a markdown table
(`<out>/ablations.md`), the raw numbers (`ablations.json`) and the sparsity plot (`sparsity.png`: RR@10 and
R@100 against FLOPS and non-zero query terms).

    python benchmarks/ablations.py demo --out runs/ablations-demo
    python benchmarks/ablations.py mtrag-un --out runs/ablations-mtrag --only teachers losses
    python benchmarks/ablations.py mtrag-un --out runs/ablations-mtrag --teachers llm llm+answer answer
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LOSSES = {
    "KL only": ["distill.contrastive_weight=0.0"],
    "KL + contrastive 0.01": ["distill.contrastive_weight=0.01"],
    "KL + contrastive 0.1": ["distill.contrastive_weight=0.1"],
    "MarginMSE": ["distill.loss=margin_mse", "distill.contrastive_weight=0.0"],
    "InfoNCE": ["distill.loss=info_nce", "distill.contrastive_weight=0.0"],
}
SPARSITY = {f"FLOPS lambda_q={lq}": ["distill.reg=flops", f"distill.lambda_q={lq}"]
            for lq in ("0.0", "0.003", "0.01", "0.03", "0.1", "0.3", "1.0", "3.0")}
# Training length, and the sampling rule (issue 8): the paper's window and rank-11 rule against the
# corpus-sized window with the positive's own score (the default, "auto").
BUDGET = {
    "20 epochs": ["distill.epochs=20", "distill.steps=null"],
    "window 2..200": ["distill.negative_window=[2,200]"],
    "20 epochs + window 2..200": ["distill.epochs=20", "distill.steps=null", "distill.negative_window=[2,200]"],
}
SAMPLING = {
    "paper window 11..960 + rank11": ["distill.negative_window=[11,960]", "distill.positive_score=rank11"],
    "paper window 11..960 + own score": ["distill.negative_window=[11,960]", "distill.positive_score=teacher"],
    "auto window + rank11": ["distill.negative_window=auto", "distill.positive_score=rank11"],
    "auto window + own score (auto)": ["distill.negative_window=auto", "distill.positive_score=auto"],
    "8 negatives": ["distill.n_negatives=8"],
    "32 negatives": ["distill.n_negatives=32"],
}
# How the student reads the conversation (issue 8): order, answers, their length, history, truncation side.
INPUTS = {
    "paper format (answers, newest first)": ["distill.input.answers=true", "distill.input.answer_max_words=null",
                                             "distill.input.order=newest_first"],
    "answers cut to 20 words": ["distill.input.answers=true", "distill.input.answer_max_words=20"],
    "answers cut to 40 words": ["distill.input.answers=true", "distill.input.answer_max_words=40"],
    "user turns only": ["distill.input.answers=false"],
    "oldest first": ["distill.input.order=oldest_first"],
    "last 2 user turns": ["distill.input.history_turns=2"],
    "last user turn before it": ["distill.input.history_turns=1"],
    "truncate the newest end": ["distill.input.truncation=newest"],
    "separator |": ["distill.input.sep=|"],
}
# The paper's central comparison: score distillation (KL) against representation distillation (MSE onto the
# teacher rewrite's vector, ConvDR / coSPLADE style), with and without a ranking term.
OBJECTIVES = {
    "score distillation (KL)": ["distill.loss=kl"],
    "representation distillation (MSE)": ["distill.loss=rep_mse", "distill.contrastive_weight=0.0"],
    "representation MSE + ranking term": ["distill.loss=rep_mse", "distill.contrastive_weight=0.1"],
}
PRECISION = {"bf16 autocast": ["distill.precision=bf16"]}
# More capacity (issue 25): transformer layers on a residual branch whose output starts at zero (models/branch.py).
CAPACITY = {f"{n} extra layer{'s' if n > 1 else ''} (residual branch)": [f"distill.extra_layers={n}"]
            for n in (1, 2)}
# The input format chosen on dev by the distill stage itself (distill.search, models/search.py), against the fixed
# formats of INPUTS (every other variant trains the configured format: the shared overrides switch the search off).
SEARCH = {"input chosen on dev (distill.search)": [
    'distill.search.input=[{"answers": false}, {"answer_max_words": 20}, {}]']}
# The settings that each helped on their own, together.
COMBINED = {"20 epochs + window 2..200 + contrastive 0.1": ["distill.epochs=20", "distill.negative_window=[2,200]",
                                                           "distill.contrastive_weight=0.1"]}
# Too little data? The same student trained on the first N train turns only (the full set is the base variant).
DATA = {f"first {n} train turns": [f"distill.max_turns={n}"] for n in (25, 50)}
DATA["no dev selection (last epoch)"] = ["distill.select_on_dev=false"]


def variants(teachers: list[str]) -> dict[str, dict[str, list[str]]]:
    """Each group's variants: name -> --set overrides (on top of the shared ones)."""
    by_teacher = {f"teacher={t}": [f"distill.learn_from={t}"] for t in teachers}
    by_teacher["teacher=fused (mean score)"] = ["distill.learn_from=fused", "teacher.fusion=mean_score"]
    by_teacher["teacher=fused (mean softmax)"] = ["distill.learn_from=fused", "teacher.fusion=mean_softmax"]
    return {"teachers": by_teacher, "losses": LOSSES, "objectives": OBJECTIVES, "inputs": INPUTS,
            "sampling": SAMPLING, "sparsity": SPARSITY, "budget": BUDGET, "precision": PRECISION, "data": DATA,
            "capacity": CAPACITY, "search": SEARCH, "combined": COMBINED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", action="append", default=None,
                        help="dataset folder; repeat to pool training data (PATH or FORMAT:PATH)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="groups: teachers losses objectives inputs sampling sparsity budget precision data "
                             "capacity search combined")
    parser.add_argument("--variants", nargs="*", default=None, help="only the variants with these names")
    parser.add_argument("--teachers", nargs="*", default=None,
                        help="teachers of every variant (default: the preset's plus '<llm>+answer')")
    parser.add_argument("--split", default="dev", help="split evaluated on (default dev: choose on dev, "
                                                       "report the chosen setting on test once)")
    parser.add_argument("--dev-fraction", type=float, default=None,
                        help="dev share of the train conversations (default: the preset's, or 0.2 if it has none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--test-best", action="store_true",
                        help="then evaluate the variant with the best dev RR@10 once on the test split")
    args = parser.parse_args()

    from flows.env import prefect_env

    prefect_env()  # the project's Prefect home, as `disco run` uses: the artifact shows in `disco ui`
    from stages.config import load
    from core.io import write_json, write_text
    from flows.pipeline import pipeline

    base = load(args.preset, args.data, args.overrides)
    teachers = args.teachers or [*base.teacher.systems, f"{base.rewrite.name}+answer"]
    dev_fraction = args.dev_fraction if args.dev_fraction is not None else (base.data.split.dev_fraction or 0.2)
    # each variant is one fixed setting: the stage's own dev search is off unless the variant sets it (SEARCH)
    shared = [*args.overrides, f"data.split.dev_fraction={dev_fraction}", f"evaluate.split={args.split}",
              f"teacher.systems={json.dumps(teachers)}", "distill.search.input=[]",
              "distill.search.extra_layers=[]", "distill.search.lambda_q=[]"]
    groups = variants(teachers)
    out = Path(args.out).resolve()
    record = out / "ablations.json"
    state = json.loads(record.read_text()) if record.exists() else {}
    if state.get("split") != args.split or state.get("teachers") != teachers:
        state = {"split": args.split, "teachers": teachers, "variants": {}}  # earlier variants do not compare
    for group in args.only or list(groups):
        for name, sets in groups[group].items():
            if args.variants and name not in args.variants:
                continue
            cfg = load(args.preset, args.data, [*shared, *sets])
            done = pipeline(cfg, str(out))
            metrics = json.loads((out / "metrics.json").read_text())
            train = done["distill"].stats
            state["variants"][name] = {
                "group": group, "sets": sets, **metrics["systems"]["disco"], **metrics["efficiency"]["disco"],
                "train_s": train.get("train_seconds"), "examples": train.get("examples"),
                "p_vs_last_turn": metrics.get("significance", {}).get("last_turn", {}).get("RR@10", {}).get("p"),
                "by_depth": metrics["by_depth"]["disco"]}
            state.update(turns=metrics["turns"], baselines={k: v for k, v in metrics["systems"].items()
                                                            if k != "disco"},
                         baseline_depth={k: v for k, v in metrics["by_depth"].items() if k != "disco"})
            write_json(record, state)  # after each variant, atomically: a crash keeps what is done
    if args.test_best:
        best = max(state["variants"], key=lambda k: state["variants"][k]["RR@10"])
        shared_test = [x for x in shared if not x.startswith("evaluate.split=")] + ["evaluate.split=test"]
        pipeline(load(args.preset, args.data, [*shared_test, *state["variants"][best]["sets"]]), str(out))
        metrics = json.loads((out / "metrics.json").read_text())
        state["test_best"] = {"variant": best, "sets": state["variants"][best]["sets"], "turns": metrics["turns"],
                              "systems": metrics["systems"], "efficiency": metrics["efficiency"],
                              "by_depth": metrics["by_depth"], "significance": metrics["significance"]}
        write_json(record, state)
    md = report(state)
    write_text(out / "ablations.md", md)
    sweep = {k: v for k, v in state["variants"].items() if v["group"] == "sparsity"}
    if sweep:
        plot_sparsity(sweep, out / "sparsity.png", state["baselines"].get("last_turn"))
    _artifact(out, md)
    print(md)


def report(state: dict) -> str:
    """Markdown: the baselines, every student variant (with its p-value against the last turn), RR@10 by depth."""
    from retrieval.report import depth_rows, markdown_table

    cols = ("RR@10", "nDCG@3", "R@10", "R@100", "query_terms", "flops", "p_vs_last_turn", "train_s")
    rows = [{"group": v["group"], "variant": k, **{m: v[m] for m in cols}} for k, v in state["variants"].items()]
    for r in rows:  # p-values span orders of magnitude
        r["p_vs_last_turn"] = "-" if r["p_vs_last_turn"] is None else f"{r['p_vs_last_turn']:.2g}"
    base_rows = [{"system": k, **v} for k, v in state["baselines"].items()]
    depth = depth_rows({"by_depth": {**state["baseline_depth"],
                                     **{k: v["by_depth"] for k, v in state["variants"].items()}}}, "RR@10")
    return (f"Split `{state['split']}`: {state['turns']} judged turns; teachers {', '.join(state['teachers'])}.\n\n"
            "### Baselines\n\n" + markdown_table(base_rows) + "\n\n### Student variants\n\n" +
            markdown_table(rows) + "\n\n### RR@10 by turn depth\n\n" + markdown_table(depth) + "\n" +
            _test_section(state.get("test_best")))


def _test_section(best: dict | None) -> str:
    """The variant chosen on dev, evaluated once on test, against every system (with the paired test)."""
    from retrieval.report import depth_rows, markdown_table, results_rows, significance_markdown

    if not best:
        return ""
    sets = " ".join(f"--set {x}" for x in best["sets"])
    return (f"\n### Chosen on dev, evaluated once on test ({best['turns']} judged turns)\n\n"
            f"Variant `{best['variant']}` ({sets}).\n\n" + markdown_table(results_rows(best)) + "\n\n" +
            markdown_table(depth_rows(best, "RR@10")) + "\n\n" + significance_markdown(best) + "\n")


def _artifact(out: Path, md: str) -> None:
    """The tables and the sparsity plot in the Prefect UI (artifact key `ablations`, flow `ablations-report`)."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    from retrieval.report import image_markdown

    if (out / "sparsity.png").exists():
        md += "\n\n" + image_markdown((out / "sparsity.png").read_bytes(), "sparsity sweep")

    @flow(name="ablations-report")
    def publish() -> None:
        create_markdown_artifact(md, key="ablations", description=f"distillation ablations in {out}")

    publish()


def plot_sparsity(sweep: dict[str, dict], path: Path, last_turn: dict | None = None) -> None:
    """RR@10 and R@100 against FLOPS and query terms, lambda_q annotated; the last turn's values dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x in zip(axes, ("flops", "query_terms")):
        for measure in ("RR@10", "R@100"):
            pts = sorted((v[x], v[measure], k.split("=")[-1]) for k, v in sweep.items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=measure)
            for px, py, label in pts:
                ax.annotate(label, (px, py), fontsize=7, textcoords="offset points", xytext=(3, 3))
            if last_turn:
                ax.axhline(last_turn[measure], linestyle="--", linewidth=1, color=ax.lines[-1].get_color(),
                           label=f"{measure} last turn")
        ax.set_xlabel("FLOPS" if x == "flops" else "non-zero query terms")
        ax.set_ylabel("effectiveness")
        ax.legend()
    fig.suptitle("query sparsity sweep (FLOPS regulariser, lambda_q annotated)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
