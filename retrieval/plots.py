"""Plots people look at (PNG bytes, and as markdown images with a data URI for Prefect artifacts).

- :func:`metrics_figure`: each measure per system as grouped bars, and RR@10 by turn depth; one legend for both
  panels, below them, so it covers no bar and no line.
- :func:`loss_figure`: the distillation's loss as it was optimised: each term times its weight (the sparsity
  term's weight is the per-step ``lambda_q``, after its warm-up) and their sum, smoothed, on a log scale when the
  terms differ by orders of magnitude. A term whose weight is 0 (FLOPS with ``lambda_q = 0``) is not optimised
  and not drawn, so it no longer flattens the others against 0.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Mapping

from retrieval.evaluation import MEASURES

# columns of models/distill.py's loss log that are not loss terms
NOT_TERMS = ("step", "epoch", "lr", "lambda_q", "total")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    """PNG bytes as a ``data:`` URI: an image a markdown artifact carries inside itself."""
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def image_markdown(data: bytes, alt: str) -> str:
    return f"![{alt}]({data_uri(data)})"


def metrics_figure(metrics: dict):
    """Grouped bars (each measure per system) and RR@10 by turn depth, one shared legend below both."""
    import numpy as np

    plt = _pyplot()
    systems = list(metrics["systems"])
    color = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(systems)}
    fig, (bars, depth) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(systems), 1)
    for i, s in enumerate(systems):
        bars.bar(np.arange(len(MEASURES)) + i * width, [metrics["systems"][s].get(m, 0.0) for m in MEASURES], width,
                 label=s, color=color[s])
    bars.set_xticks(np.arange(len(MEASURES)) + 0.4 - width / 2, MEASURES)
    bars.set_ylim(0, 1)
    bars.set_title(f"effectiveness on {metrics.get('turns', '?')} held-out turns")
    for s, depths in metrics.get("by_depth", {}).items():
        labels = [f"{d}\n(n={v['turns']})" for d, v in depths.items()]
        depth.plot(labels, [v["RR@10"] for v in depths.values()], marker="o", color=color.get(s), label=s)
    depth.set_ylim(0, 1.02)
    depth.set_title("RR@10 by turn depth")
    depth.set_xlabel("turn depth (n: turns at that depth)")
    ncol = min(len(systems), 4)
    fig.tight_layout(rect=(0, 0.07 * math.ceil(len(systems) / ncol) + 0.04, 1, 1))
    fig.legend(*bars.get_legend_handles_labels(), loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    return fig


def metrics_plot(metrics: dict, path) -> bytes:
    """:func:`metrics_figure` written to ``path`` as PNG; returns the bytes."""
    data = png(metrics_figure(metrics))
    path.write_bytes(data)
    return data


def loss_terms(loss, weights: Mapping[str, float | str] | None) -> dict[str, list[float]]:
    """The curves of :func:`loss_figure`: ``weights`` maps each term (a column of the loss log) to its weight, a
    number or the column holding it per step (``"lambda_q"``); terms weighted 0 throughout are left out. Without
    weights (a run from before they were recorded) only the total, which is what was minimised."""
    out: dict[str, list[float]] = {}
    for term in (c for c in loss.columns if c not in NOT_TERMS and weights):
        w = weights.get(term)
        if w is None:
            continue
        factor = loss[w].to_list() if isinstance(w, str) else [float(w)] * loss.height
        if any(factor):
            out[f"{term} x {w if isinstance(w, str) else f'{w:g}'}"] = [
                f * v for f, v in zip(factor, loss[term].to_list())]
    out["total"] = loss["total"].to_list()
    return out


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - window] if i >= window else 0.0)
        out.append(acc / min(i + 1, window))
    return out


def loss_figure(loss, weights: Mapping[str, float | str] | None):
    """The weighted loss terms and their sum per optimizer step (moving mean over about 2% of the steps)."""
    plt = _pyplot()
    curves = loss_terms(loss, weights)
    steps, window = loss["step"].to_list(), max(1, loss.height // 50)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for name, values in curves.items():
        ax.plot(steps, _smooth(values, window), label=name, lw=2.2 if name == "total" else 1.4,
                color="black" if name == "total" else None)
    positive = [v for values in curves.values() for v in values if v > 0]
    if positive and max(positive) / min(positive) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step" + (f" (moving mean of {window})" if window > 1 else ""))
    ax.set_title("distillation loss: each term times its weight" if weights else
                 "distillation loss (total; this run did not record the terms' weights)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def sparsity_figure(rows: list[Mapping], metric: str = "RR@10", budget: float | None = None):
    """The sparsity sweep (``distill.search.lambda_q``): dev ``metric`` and mean query terms per weight, the
    query-term budget as a dashed line and the kept weight marked. ``rows``: the search rows of axis lambda_q."""
    plt = _pyplot()
    xs = [float(r["value"]) for r in rows]
    pos = list(range(len(xs)))  # even spacing: the weights span orders of magnitude and include 0
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(pos, [r[metric] for r in rows], "o-", color="tab:blue", label=f"dev {metric}")
    ax.set_xticks(pos, [f"{x:g}" for x in xs])
    ax.set_xlabel("lambda_q (FLOPS weight)")
    ax.set_ylabel(f"dev {metric}", color="tab:blue")
    right = ax.twinx()
    right.plot(pos, [r["terms"] for r in rows], "s--", color="tab:orange", label="query terms")
    if budget is not None:
        right.axhline(budget, color="tab:orange", linestyle=":", linewidth=1, label="term budget")
    right.set_ylabel("mean query terms", color="tab:orange")
    for i, r in enumerate(rows):
        if r.get("chosen"):
            ax.axvline(i, color="grey", alpha=0.3, linewidth=6)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower left")
    ax.set_title("sparsity sweep on dev (kept weight shaded)")
    return fig
