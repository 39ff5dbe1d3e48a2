"""Results people look at: the metrics table (terminal and markdown) and the report (plots: retrieval/plots.py)."""

from __future__ import annotations

from retrieval.evaluation import MEASURES
from retrieval.plots import image_markdown, metrics_plot, png  # noqa: F401  (also this module's: its users')

# (metrics.json's key, column, decimals): as many as tell systems apart, so the tables stay narrow
EFFICIENCY = (("query_terms", "q terms", 1), ("flops", "FLOPS", 2), ("latency_ms", "ms/query", 1))


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def results_rows(metrics: dict) -> list[dict]:
    """One row per system: its measures (floats) and its efficiency (text, to the decimals above)."""
    eff = metrics.get("efficiency", {})
    return [{"system": name, **{m: vals.get(m) for m in MEASURES},
             **{label: None if (v := eff.get(name, {}).get(k)) is None else f"{v:.{digits}f}"
                for k, label, digits in EFFICIENCY}}
            for name, vals in metrics["systems"].items()]


def results_table(metrics: dict) -> str:
    """A plain-text table for the terminal, with the paired test of RR@10 (disco minus each system, its p-value)
    beside each row when the metrics hold one."""
    rows = results_rows(metrics)
    sig = metrics.get("significance", {})
    if sig:
        for r in rows:
            t = sig.get(r["system"], {}).get("RR@10")
            r["disco-sys RR@10"] = None if t is None else f"{t['diff']:+.3f}"
            r["p"] = None if t is None else f"{t['p']:.4f}" + (" *" if t["p"] < 0.05 else "")
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(xs, widths)))  # noqa: E731
    head = f"{metrics.get('dataset', '')}: {metrics.get('turns', '?')} held-out turns " \
           f"(relevant: grade >= {metrics.get('rel_threshold', 1)})"
    foot = ["", "disco-sys RR@10, p: disco minus that system, paired randomization test on the same turns "
                "(* p < 0.05)"] if sig else []
    return "\n".join([head, line(cols), line(["-" * w for w in widths]), *(line(c) for c in cells), *foot])


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def depth_rows(metrics: dict, measure: str) -> list[dict]:
    rows = []
    for name, depths in metrics.get("by_depth", {}).items():
        rows.append({"system": name, **{f"turn {d} (n={v['turns']})": v[measure] for d, v in depths.items()}})
    return rows


def significance_rows(metrics: dict) -> list[dict]:
    """disco against each system (``metrics["significance"]``); p < 0.05 marked ``*``. Empty for older runs."""
    rows = []
    for name, tests in metrics.get("significance", {}).items():
        for measure, t in tests.items():
            (lo, hi), mark = t["ci"], " *" if t["p"] < 0.05 else ""
            rows.append({"system": name, "measure": measure, "diff": f"{t['diff']:+.3f}",
                         "95% CI": f"[{lo:+.3f}, {hi:+.3f}]", "p": f"{t['p']:.4f}{mark}",
                         "wins/ties/losses": f"{t['wins']}/{t['ties']}/{t['losses']}"})
    return rows


def significance_markdown(metrics: dict) -> str:
    """The significance section of the report ("" when the metrics have none)."""
    rows = significance_rows(metrics)
    if not rows:
        return ""
    trials = {t.get("trials", 10_000) for tests in metrics["significance"].values() for t in tests.values()}
    return "\n\n".join([
        f"## disco vs each system (paired randomization test, {max(trials):,} trials)",
        "diff = disco minus the system (mean over turns); 95% CI: paired bootstrap of the difference; "
        "wins/ties/losses: turns where disco scores higher/equal/lower; * p < 0.05 (two-sided, not corrected "
        "for multiple comparisons).",
        markdown_table(rows)])


def line_plot_markdown(df, x: str, ys: list[str], title: str) -> str:
    """A small line plot (polars frame) as a markdown image with a data URI (for Prefect artifacts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for y in ys:
        ax.plot(df[x].to_list(), df[y].to_list(), label=y)
    ax.set_title(title)
    ax.set_xlabel(x)
    ax.legend(fontsize=8)
    return image_markdown(png(fig), title)


def markdown_report(metrics: dict, plot_name: str) -> str:
    """The report: effectiveness and efficiency (two tables, narrow enough for the Prefect UI's artifact page),
    RR@10 by turn depth, disco against each system, and the plot (``plot_name``: a file beside the report, or a
    ``data:`` URI for an artifact that carries it)."""
    rows = results_rows(metrics)
    effectiveness = [{k: r[k] for k in ("system", *MEASURES)} for r in rows]
    efficiency = [{k: r[k] for k in ("system", *(label for _, label, _ in EFFICIENCY))} for r in rows
                  if any(r[label] is not None for _, label, _ in EFFICIENCY)]
    parts = [
        f"# DiSCo results: {metrics.get('dataset', '')}",
        f"{metrics.get('turns')} held-out turns ({metrics.get('split')} split), relevant = grade >= "
        f"{metrics.get('rel_threshold')}.",
        markdown_table(effectiveness),
        "## Efficiency\n\nMean non-zero query terms, FLOPS (expected shared terms per query-document pair), median "
        "encode+search latency per query on this machine; mean non-zero terms per passage: "
        f"{metrics.get('doc_terms_mean', 0):.1f}.\n\n" + markdown_table(efficiency) if efficiency else "",
        "## RR@10 by turn depth\n\n" + markdown_table(depth_rows(metrics, "RR@10")) if metrics.get("by_depth") else "",
        significance_markdown(metrics),
        f"![metrics]({plot_name})",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
