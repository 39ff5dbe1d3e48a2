"""Ablations of the distillation (issue 4): teachers, losses, and a query-sparsity sweep.

Runs the pipeline once per variant in one output folder, so the ingest, rewrite, index and teacher stages are
computed once and served from cache afterwards; only distill and evaluate rerun. Writes a markdown table
(`<out>/ablations.md`), the raw numbers (`ablations.json`) and the sparsity plot (`sparsity.png`: RR@10 and
R@100 against FLOPS and non-zero query terms).

    python benchmarks/ablations.py demo --out runs/ablations-demo
    python benchmarks/ablations.py mtrag-un --out runs/ablations-mtrag --only teachers losses
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

VARIANTS: dict[str, dict[str, list[str]]] = {
    "teachers": {
        "teacher=human": ["teacher.distill_from=human"],
        "teacher=llm": ["teacher.distill_from=llm"],
        "teacher=fused (mean score)": ["teacher.distill_from=fused"],
        "teacher=fused (mean softmax)": ["teacher.distill_from=fused", "teacher.fusion=mean_softmax"],
    },
    "losses": {
        "KL only": ["distill.contrastive_weight=0.0"],
        "KL + contrastive 0.01": ["distill.contrastive_weight=0.01"],
        "KL + contrastive 0.1": ["distill.contrastive_weight=0.1"],
        "MarginMSE": ["distill.loss=margin_mse", "distill.contrastive_weight=0.0"],
        "InfoNCE": ["distill.loss=info_nce", "distill.contrastive_weight=0.0"],
    },
    "sparsity": {f"FLOPS lambda_q={lq}": ["distill.reg=flops", f"distill.lambda_q={lq}"]
                 for lq in ("0.0", "0.001", "0.01", "0.05")},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=None)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parents[1] / ".prefect"))
    from disco.config import load
    from disco.report import markdown_table
    from flows.pipeline import pipeline

    out = Path(args.out).resolve()
    results: dict[str, dict] = {}
    for group in args.only:
        for name, sets in VARIANTS[group].items():
            cfg = load(args.preset, args.data, [*args.overrides, *sets])
            pipeline(cfg, str(out))
            metrics = json.loads((out / "metrics.json").read_text())
            results[name] = {"group": group, "sets": sets, **metrics["systems"]["disco"],
                             **metrics["efficiency"]["disco"]}
            baselines = {k: v for k, v in metrics["systems"].items() if k != "disco"}
            (out / "ablations.json").write_text(json.dumps({"variants": results, "baselines": baselines}, indent=2))
    rows = [{"variant": k, **{m: v[m] for m in ("RR@10", "nDCG@3", "R@10", "R@100", "query_terms", "flops")}}
            for k, v in results.items()]
    base_rows = [{"variant": f"baseline {k}", **v} for k, v in baselines.items()]
    (out / "ablations.md").write_text(markdown_table(base_rows) + "\n\n" + markdown_table(rows) + "\n")
    sweep = {k: v for k, v in results.items() if v["group"] == "sparsity"}
    if sweep:
        plot_sparsity(sweep, out / "sparsity.png")
    _artifact(out, rows, base_rows)
    print((out / "ablations.md").read_text())


def _artifact(out: Path, rows: list[dict], base_rows: list[dict]) -> None:
    """The table and the sparsity plot in the Prefect UI (artifact key `ablations`)."""
    from prefect.artifacts import create_markdown_artifact

    from disco.report import image_markdown, markdown_table

    md = markdown_table(base_rows) + "\n\n" + markdown_table(rows)
    if (out / "sparsity.png").exists():
        md += "\n\n" + image_markdown((out / "sparsity.png").read_bytes(), "sparsity sweep")
    create_markdown_artifact(md, key="ablations", description=f"distillation ablations in {out}")


def plot_sparsity(sweep: dict[str, dict], path: Path) -> None:
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
        ax.set_xlabel("FLOPS" if x == "flops" else "non-zero query terms")
        ax.set_ylabel("effectiveness")
        ax.legend()
    fig.suptitle("query sparsity sweep (FLOPS regulariser, lambda_q annotated)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
