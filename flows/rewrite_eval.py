"""``disco rewrite-eval``: rewrite quality of any teacher against the human rewrites, as a report and artifact.

Orchestration only; the measures are :mod:`retrieval.rewrite_eval`, the rewriting :mod:`models.rewrite`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import flow

from retrieval import rewrite_eval as rq
from core.errors import DiscoError
from core.io import write_json, write_parquet, write_text
from models.rewrite.config import RewriteConfig
from models.rewriter.config import RewriterConfig
from stages.rewriter import resolve_llm


def prompted(llm: RewriteConfig) -> RewriteConfig:
    """The base LLM prompted as before fine-tuning (the instruction prompt, the earlier demo settings), to
    report beside the fine-tuned rewriter."""
    return llm.model_copy(update={"name": "llm-prompted", "model": RewriterConfig().base, "prompt": "instruction",
                                  "max_new_tokens": 24, "max_history_chars": 1200})


def generate(turns: pl.DataFrame, cfg: RewriteConfig, cache: Path) -> tuple[pl.DataFrame, dict]:
    """The LLM's rewrites of ``turns`` (cached by prompt hash under ``cache``: a rerun generates nothing)."""
    from models.rewrite import rewrite_turns
    from models.rewrite.prompt import prompt_hash
    from tasks.artifacts import Progress

    requests = turns.select("turn_id", "question", "history").to_dicts()
    bar = Progress("rewrite-eval-progress", f"{cfg.name}: rewriting {len(requests)} turns", len(requests))
    stats: dict = {}
    done = rewrite_turns(requests, cfg, cache / prompt_hash(cfg) / "parts", progress=bar, stats=stats)
    bar.close()
    df = pl.DataFrame([{"turn_id": r["turn_id"], "source": cfg.name, "rewrite": r["rewrite"]} for r in done],
                      schema={"turn_id": pl.String, "source": pl.String, "rewrite": pl.String})
    return df, stats


@flow(name="rewrite-eval", log_prints=True)
def rewrite_eval_flow(dataset: str = "demo", out: str = "runs/rewrite-eval", rewrites: list[str] = (),
                      llm: RewriteConfig | None = None, run_dir: str | None = None, skip: int = 0,
                      limit: int | None = None, data_format: str | None = None, cache: str | None = None,
                      worst_n: int = 10, rewriter: RewriterConfig | None = None, baseline: bool = True) -> dict:
    """Score each rewrite source against the human rewrites of ``dataset`` (a short name of
    :func:`retrieval.rewrite_eval.known_datasets` or a folder of format ``data_format``); write ``report.md``,
    ``summary.json`` and ``per_turn.parquet`` under ``out`` and a ``rewrite-eval`` markdown artifact.

    ``llm`` naming the fine-tuned rewriter (``model="rewriter"``, made as ``rewriter`` says) is reported beside the
    base LLM prompted as before (``baseline``) and the automatic rewrites the dataset ships (CAsT 2021)."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.artifacts import try_

    fmt, path, options = rq.resolve_dataset(dataset, data_format)
    turns = rq.slice_turns(rq.load_turns(fmt, path, **options), skip, limit)
    sources = [rq.read_rewrites(p) for p in rewrites]
    shipped = rq.dataset_rewrites(fmt, path, **options)
    if shipped is not None:
        sources.append(shipped)
    notes = [f"Dataset `{dataset}` ({fmt}, {path}): {len(turns)} turns with a human rewrite"
             + (f" (conversations after the first {skip} turns)" if skip else "") + "."]
    stats = {}
    cache_dir = Path(cache or Path(out) / "cache")
    llms = []
    if llm is not None:
        fine_tuned = llm.model == "rewriter"
        llms = [(resolve_llm(rewriter or RewriterConfig(mode="packaged"), llm, cache_dir / "rewriter"), llm.model)]
        if fine_tuned and baseline:
            llms.append((prompted(llm), prompted(llm).model))
    for cfg, name in llms:
        generated, st = generate(turns, cfg, cache_dir)
        stats[cfg.name] = st
        sources.append(generated)
        notes.append(f"`{cfg.name}`: {name} via {cfg.backend}, prompt `{cfg.prompt}`, output checks "
                     f"{'on' if cfg.output_checks else 'off'}: {st.get('fallback', 0)} fallbacks to the "
                     f"utterance {st.get('fallback_reasons', {})}.")
    rewrites_df = pl.concat(sources) if sources else None
    per_turn, summary = rq.evaluate(turns, rewrites_df)
    retrieval = None
    if run_dir:
        texts: dict[str, dict[str, str]] = {}
        for t, s, r in per_turn.select("turn_id", "source", "rewrite").iter_rows():
            texts.setdefault(s, {})[t] = r
        retrieval = rq.retrieval(texts, Path(run_dir))
    report = rq.markdown(f"Rewrite quality on {dataset}", summary, rq.worst(per_turn, turns, worst_n), retrieval,
                         notes)
    out_dir = Path(out)
    write_text(out_dir / "report.md", report)
    write_parquet(out_dir / "per_turn.parquet", per_turn.to_arrow())
    result = {"dataset": dataset, "turns": len(turns), "summary": summary.to_dicts(), "retrieval": retrieval,
              "llm_stats": stats}
    write_json(out_dir / "summary.json", result)
    try_(lambda: create_markdown_artifact(report, key="rewrite-eval", description=f"rewrite quality on {dataset}"))
    print(f"rewrite-eval: {len(turns)} turns of {dataset}, report {out_dir / 'report.md'}")
    return result
