"""Stage 2, rewrite: every teacher's query text for every turn (LLM rewrites beside the dataset's human ones)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from core import schema
from core.errors import DiscoError
from core.io import Manifest, write_parquet
from models.rewrite.config import RewriteConfig
from retrieval.rewrites import rewrite_quality, rewrite_samples, teacher_rewrites
from stages.base import Artifact, Stage
from stages.rewriter import REWRITER


def run(out: Path, work: Path, progress, rewrite: RewriteConfig, systems: list[str], ingest: Manifest,
        rewriter: Manifest) -> dict:
    """``rewrites.parquet``: the rewrites of each teacher of ``systems`` (``teacher.systems``); LLM parts are
    resumable and shared between keys under ``work``'s parent. With ``rewrite.model = "rewriter"`` the LLM is the
    rewriter stage's merged model folder."""
    turns = pl.read_parquet(ingest["turns"])
    llm_teachers = {rewrite.name, f"{rewrite.name}+answer"} & set(systems)
    if rewrite.model == REWRITER and llm_teachers:
        if not rewriter.stats.get("used"):
            raise DiscoError("rewrite.model is 'rewriter' but the rewriter stage made no model (rewriter.mode "
                             "'off'): set rewriter.mode=packaged (the adapter the project ships) or train")
        rewrite = rewrite.model_copy(update={"model": str(rewriter["model"])})
    fallbacks: dict[str, dict] = {}  # LLM teacher -> rewrites replaced by the utterance (output checks), by reason
    reuse: dict[str, dict] = {}  # LLM teacher -> turns generated now / reused from earlier runs' parts
    table = teacher_rewrites(turns, systems, rewrite, work.parent, progress, fallbacks, reuse)
    write_parquet(out / "rewrites.parquet", table.to_arrow().cast(schema.REWRITES))
    return {"teachers": table.group_by("teacher").len().sort("teacher").to_dicts(), "fallbacks": fallbacks,
            "quality": rewrite_quality(turns, table), "rows": len(table), "samples": rewrite_samples(turns, table),
            "computed_turns": sum(r["computed_turns"] for r in reuse.values()),
            "reused_turns": sum(r["reused_turns"] for r in reuse.values()), "llm_turns": reuse}


def quality_rows(stats: dict) -> list[dict]:
    """Each LLM teacher's quality row with how many of its rewrites fell back to the utterance and why (the output
    checks), so that a teacher equal to the last turn shows as such; teachers without checks as they were."""
    fallbacks = stats.get("fallbacks") or {}
    rows = []
    for row in stats.get("quality") or []:
        fb = fallbacks.get(row["teacher"])
        if fb:
            reasons = {k: v for k, v in fb.items() if k not in ("turns", "fallback")}
            row = {**row, "fallbacks": f"{fb['fallback']} of {fb['turns']}",
                   "why": ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "-"}
        rows.append(row)
    listed = {r["teacher"] for r in rows}
    rows += [{"teacher": name, "fallbacks": f"{fb['fallback']} of {fb['turns']}",
              "why": ", ".join(f"{k} {v}" for k, v in fb.items() if k not in ("turns", "fallback")) or "-"}
             for name, fb in fallbacks.items() if name not in listed]
    return rows


def artifacts(m: Manifest) -> list[Artifact]:
    out = []
    rows = quality_rows(m.stats)
    if rows:
        out.append(Artifact("table", "rewrite-quality", rows,
                            "each teacher's rewrites against the dataset's human rewrites, and the LLM rewrites that "
                            "fell back to the utterance (output checks)"))
    out.append(Artifact("table", "rewrite-samples", m.stats["samples"],
                        "sample rewrites per teacher (turns after the first)"))
    return out


STAGE = Stage(
    name="rewrite",
    summary="LLM rewrites of every turn (transformers on CPU, vLLM on GPU; resumable), plus the dataset's human "
            "rewrites",
    upstream=("ingest", "rewriter"),
    reads=("rewrite", "teacher.systems"),
    outputs={"rewrites": "rewrites.parquet"},
    rows={"rewrites": "rows"},
    run=run,
    artifacts=artifacts,
)
