"""The plots as drawn (matplotlib's own layout, measured in the rendered figure): the metrics plot's one legend
covers neither panel and names every system of both; the loss curve draws what was optimised, each term times its
weight, without a term weighted 0, on a log scale when the terms differ by orders of magnitude."""

from __future__ import annotations

import polars as pl
import pytest

from models.distill_config import DistillConfig
from retrieval.plots import loss_figure, loss_terms, metrics_figure
from stages.distill import loss_weights

SYSTEMS = ["last_turn", "conversation", "conversation:student-input", "rewrite:human", "rewrite:llm", "disco"]
METRICS = {"turns": 65, "systems": {s: {"RR@10": 0.9, "nDCG@3": 0.95, "R@10": 0.98, "R@100": 1.0} for s in SYSTEMS},
           "by_depth": {s: {"1": {"RR@10": 0.95, "turns": 8}, "2-3": {"RR@10": 0.9, "turns": 20},
                            "4-6": {"RR@10": 0.85, "turns": 37}} for s in SYSTEMS}}


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_metrics_legend_covers_no_panel_and_serves_both():
    fig = metrics_figure(METRICS)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    [legend] = fig.legends
    box = legend.get_window_extent(renderer)
    bars, depth = fig.axes
    for ax in (bars, depth):  # the axes with their tick labels and titles
        assert not ax.get_legend() and not _overlap(box, ax.get_tightbbox(renderer)), ax.get_title()
    assert [t.get_text() for t in legend.get_texts()] == SYSTEMS
    bar_colors = [c.patches[0].get_facecolor() for c in bars.containers]
    assert [line.get_color() for line in depth.get_lines()] == bar_colors  # one colour per system in both
    assert [t.get_text() for t in depth.get_xticklabels()] == ["1\n(n=8)", "2-3\n(n=20)", "4-6\n(n=37)"]


def _loss(lambda_q: float) -> pl.DataFrame:
    steps = list(range(1, 101))
    kl = [0.8 * 0.99 ** s for s in steps]
    flops = [40.0] * 100  # the raw FLOPS term is large
    lam = [lambda_q * min(1.0, s / 10) ** 2 for s in steps]
    total = [0.99 * k + 0.1 * 2.0 + 1.0 * 0.002 + m * f for k, m, f in zip(kl, lam, flops)]
    return pl.DataFrame({"step": steps, "epoch": [1] * 100, "lambda_q": lam, "kl": kl, "contrastive": [2.0] * 100,
                         "flops": flops, "anti_zero": [0.002] * 100, "total": total, "lr": [1e-4] * 100})


def test_loss_curves_are_the_weighted_terms_without_those_weighted_zero():
    loss = _loss(0.0)
    curves = loss_terms(loss, loss_weights(DistillConfig(contrastive_weight=0.1)))
    assert list(curves) == ["kl x 0.99", "contrastive x 0.1", "anti_zero x 1", "total"]  # flops: weight 0
    step = [sum(v[i] for k, v in curves.items() if k != "total") for i in range(100)]
    assert step == pytest.approx(curves["total"])  # the drawn terms add up to what was optimised
    assert max(curves["total"]) < 1.0  # not flattened by the raw FLOPS term (40)


def test_a_warmed_up_sparsity_term_is_drawn_with_its_per_step_weight():
    curves = loss_terms(_loss(0.01), loss_weights(DistillConfig(contrastive_weight=0.1, lambda_q=0.01)))
    assert curves["flops x lambda_q"][0] == pytest.approx(0.01 * 0.01 * 40) and \
        curves["flops x lambda_q"][-1] == pytest.approx(0.4)


def test_loss_figure_scale_and_a_run_without_weights():
    fig = loss_figure(_loss(0.0), loss_weights(DistillConfig(contrastive_weight=0.1)))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # anti_zero (0.002) beside kl (~0.8)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["kl x 0.99", "contrastive x 0.1", "anti_zero x 1",
                                                                    "total"]
    old = loss_figure(_loss(0.0), None).axes[0]  # recorded before the weights were: the total only
    assert [t.get_text() for t in old.get_legend().get_texts()] == ["total"] and "did not record" in old.get_title()
