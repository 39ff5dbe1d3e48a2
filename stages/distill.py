"""Stage 5, distill: train the student query encoder on conversations to reproduce the teacher's scores
(Lupart et al., SIGIR 2025, sec. 3; the loop is :func:`models.distill.train_student`).

Pooled training data: the train turns of every training dataset (``data``, then ``extra_data``), each with its
own ingest, index and teacher instance and its own teacher (``source_teachers``: ``distill.learn_from`` unless the
dataset names one in its ``learn_from``, e.g. CANARD's human rewrites beside MTRAG-UN's privileged answers); the
dev turns of every dataset (``distill.dev_datasets=all``) or of the first only choose the best epoch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from core.errors import DiscoError
from core.io import Manifest, atomic_path
from models.distill_config import DistillConfig
from models.splade_config import SpladeConfig
from retrieval.plots import image_markdown, loss_figure, png, sparsity_figure
from retrieval.report import line_plot_markdown
from stages.base import Artifact, Stage


def run(out: Path, work: Path, progress, encoder: SpladeConfig, distill: DistillConfig, systems: list[str],
        fuse: list[str] | None, k: int, source_teachers: list[str], ingest: list[Manifest], index: list[Manifest],
        teacher: list[Manifest], rewrite: list[Manifest]) -> dict:
    """``student/`` (safetensors + tokenizer + card), ``loss.parquet`` and ``dev.parquet``; checkpoints in
    ``work`` make it resumable. ``ingest[i]``, ``index[i]``, ``teacher[i]``, ``rewrite[i]`` and
    ``source_teachers[i]`` belong to training dataset i; ``systems`` (``teacher.systems``: the teacher runs
    computed), ``fuse`` (``teacher.fuse``: those the fused run averages, all when None: a fused teacher's
    representation targets are their rewrites) and ``k`` (``teacher.k``: the run depth) are all the
    distillation reads of the teacher section, so its other fields (e.g. ``teacher.searcher``, which gives
    identical runs) do not retrain the student. ``teacher`` is the teacher stage's manifests (one per training
    dataset), named after the stage as every upstream argument is (stages/base.py: Stage), not a config field."""
    # imported here, not at the top: a cached run reads this module for the config and the key, and must not
    # pay for torch and transformers (tests/disco/test_cached_run.py)
    from models.distill import OUTPUTS, discard_scratch
    from models.examples import Source
    from models.search import search_and_train

    work.mkdir(parents=True, exist_ok=True)

    def source(i: int, own: str) -> Source:
        """Training dataset i learning from teacher ``own``: its run of that teacher, extracted once."""
        d, x, t, rw = ingest[i], index[i], teacher[i], rewrite[i]
        path = work / f"teacher_run-{i}-{own}.parquet"
        if not path.exists():
            runs = pl.scan_parquet(t["runs"])
            if not runs.filter(pl.col("system") == own).select(pl.len()).collect().item():
                names = runs.select(pl.col("system").unique()).collect()["system"]
                raise DiscoError(f"distill: no teacher run named {own!r} for {d.stats.get('format')} "
                                 f"data; runs: {sorted(names)}")
            with atomic_path(path) as tmp:  # streamed: the run is never held whole
                runs.filter(pl.col("system") == own).sink_parquet(tmp, compression="zstd")
        name = "" if len(ingest) == 1 else f"{i}-{d.stats.get('format')}"
        return Source(d["turns"], d["qrels"], path, x["doc_vectors"], name, rewrites=rw["rewrites"],
                      systems=tuple(fuse or systems), learn_from=own)

    def sources_for(learn_from: str) -> list[Source]:
        """The training sources when ``data`` learns from ``learn_from`` (distill.search.learn_from's candidates);
        a pooled extra dataset keeps its own teacher (its teacher stage computed only that one)."""
        return [source(0, learn_from)] + [source(i, own) for i, own in enumerate(source_teachers[1:], 1)]

    assert len(ingest) == len(index) == len(teacher) == len(rewrite) == len(source_teachers)
    sources = sources_for(source_teachers[0])
    bar = progress("distill-progress", f"distilling from {', '.join(dict.fromkeys(source_teachers))}", 1)
    summary = search_and_train(distill, encoder.model, sources_for, work, max_length=encoder.query_max_length,
                               quant_scale=encoder.quant_scale, k=k, progress=bar,
                               dev=sources)  # with dev_datasets="first" the extra datasets have no dev turns
    bar.close()
    shutil.copytree(work / OUTPUTS["student"], out / "student")
    for name in ("loss", "dev"):
        shutil.copy2(work / OUTPUTS[name], out / STAGE.outputs[name])
    discard_scratch(work)
    chosen = summary.get("chosen_settings", {}).get("learn_from", distill.learn_from)
    return {**summary, "learn_from": chosen, "source_teachers": [chosen, *source_teachers[1:]],
            "loss_weights": loss_weights(distill)}


def loss_weights(cfg: DistillConfig) -> dict[str, float | str]:
    """The weight of each term of the loss log (``loss.parquet``'s columns, models/losses.py): a number, or for
    the sparsity term the column holding its per-step weight (``lambda_q``, warmed up)."""
    weights: dict[str, float | str] = {cfg.loss: cfg.main_weight, "contrastive": cfg.contrastive_weight,
                                       "anti_zero": cfg.anti_zero_weight}
    if cfg.reg != "none":
        weights[cfg.reg] = "lambda_q"
    return weights


def artifacts(m: Manifest) -> list[Artifact]:
    """Loss per epoch as a table and the curve; the dev curve (epoch 0: the untrained student) and best epoch;
    the greedy soup's ingredients, when ``distill.soup_seeds`` is set; the dev measures of each interpolation
    alpha, when tried."""
    loss = pl.read_parquet(m["loss"])
    parts = [c for c in loss.columns if c not in ("step", "epoch", "lr")]
    per_epoch = loss.group_by("epoch").agg([pl.col(c).mean().round(5) for c in parts]).sort("epoch")
    weights = m.stats.get("loss_weights")
    out = [Artifact("table", "distill-loss", per_epoch.to_dicts(),
                    f"training loss per epoch, each term unweighted ({m.stats.get('steps')} steps)"),
           Artifact("markdown", "distill-loss-curve", image_markdown(png(loss_figure(loss, weights)),
                                                                     "distillation loss"),
                    "loss curve: each term times its weight, and the total optimised")]
    dev = pl.read_parquet(m["dev"])
    if not dev.is_empty() and "RR@10" in dev.columns:
        s = m.stats
        out += [Artifact("table", "distill-dev-curve", dev.with_columns(pl.col(pl.Float64).round(4)).to_dicts(),
                         f"dev measures per epoch ({s.get('dev_turns')} dev turns, ranked in the "
                         f"{s.get('dev_ranked')}); best epoch {s.get('best_epoch')}"),
                Artifact("markdown", "distill-dev-plot",
                         line_plot_markdown(dev, "epoch", ["RR@10", "nDCG@3", "R@10"], "dev measures per epoch"),
                         "dev curve")]
    search = m.stats.get("search") or []
    if search:  # distill.search: the candidates tried on dev, one axis after the other
        out.append(Artifact("table", "distill-search",
                            [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                             for row in search],
                            f"settings chosen on dev ({m.stats.get('dev_turns')} dev turns), each candidate trained "
                            f"for a short budget; kept: {m.stats.get('chosen')}"))
        sweep = [r for r in search if r["axis"] == "lambda_q"]
        if sweep:
            out.append(Artifact("markdown", "distill-sparsity-sweep",
                                image_markdown(png(sparsity_figure(sweep, budget=sweep[0].get("max_terms"))),
                                               "sparsity sweep"), "dev effectiveness and query terms per FLOPS weight"))
    soup = m.stats.get("soup_dev") or []
    if soup:  # distill.soup_seeds: which seeds' best epochs the greedy soup kept, tried best first on dev
        out.append(Artifact("table", "distill-soup",
                            [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in soup],
                            f"greedy model soup over training seeds (Wortsman et al. 2022): each seed's best dev "
                            f"epoch, tried best first, kept when the average with it scores at least as well on dev "
                            f"(soup_*: the soup after the step); seeds kept: {m.stats.get('soup_seeds')}"))
    mixes = m.stats.get("interpolation_dev") or []
    if mixes:  # distill.interpolate: which mix of the best epoch with the starting encoder dev kept
        out.append(Artifact("table", "distill-interpolation",
                            [{k: round(v, 4) for k, v in row.items()} for row in mixes],
                            f"dev measures of alpha * student + (1 - alpha) * starting encoder (WiSE-FT); alpha "
                            f"{m.stats.get('interpolation_alpha')} kept"))
    return out


STAGE = Stage(
    name="distill",
    summary="trains the student query encoder on the conversation as `distill.input` reads it (KL + in-batch "
            "contrastive + sparsity) over the train turns of every training dataset, each from its own teacher; "
            "dev turns choose the settings of `distill.search` (teacher, input format, depth, sparsity weight) "
            "and the epoch",
    upstream=("ingest", "index", "teacher", "rewrite"),
    reads=("encoder", "distill", "teacher.systems", "teacher.fuse", "teacher.k", "source_teachers"),
    outputs={"student": "student", "loss": "loss.parquet", "dev": "dev.parquet"},
    run=run,
    scope="training",
    artifacts=artifacts,
)
