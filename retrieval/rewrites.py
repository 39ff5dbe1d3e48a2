"""The teachers' query texts for every turn, and how close each teacher's rewrites are to the human ones.

Teachers (Lupart et al., SIGIR 2025, sec. 3-4): ``human`` (the dataset's rewrites), ``answer`` (privileged: the
question followed by the dataset's reference answer, which the student never sees), the LLM teacher named by
``RewriteConfig.name`` (vLLM or transformers ``generate``; resumable: finished chunks are kept in
``parts_root``), and ``<that name>+answer`` (e.g. ``llm+answer``): the same LLM writing a rewrite and a short
answer of its own (LLM4CS-style expansion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from core import schema
from core.errors import DiscoError
from core.io import sha256_text
from core.parallel import bounds, distributed, pmap
from models.rewrite import CHUNK_BATCHES, rewrite_turns
from models.rewrite.config import RewriteConfig
from models.rewrite.prompt import prompt_hash
from retrieval.evaluation import token_f1

DATASET_TEACHERS = ("human", "answer")


def teacher_rewrites(turns: pl.DataFrame, teachers: list[str], rewrite: RewriteConfig, parts_root: Path,
                     progress: Callable | None = None, fallbacks: dict | None = None,
                     reuse: dict | None = None) -> pl.DataFrame:
    """One row per (turn, teacher): ``turn_id, teacher, rewrite, prompt_hash`` (:data:`schema.REWRITES`).

    LLM parts go to ``parts_root/rewrite-llm-<prompt hash>/parts``: keyed by the prompt, not by the stage, so a
    change elsewhere (e.g. another teacher added) reuses the LLM's finished rewrites.
    ``progress(key, description, total)`` makes a progress bar. With the rewrite config's output checks on,
    ``fallbacks[teacher]`` counts the rewrites replaced by the raw utterance, by reason. ``reuse[teacher]`` counts
    each LLM teacher's turns generated now (``computed_turns``) and taken from the parts of earlier runs
    (``reused_turns``: same turn and same prompt text), e.g. the old turns of a dataset that grew.
    """
    fallbacks = {} if fallbacks is None else fallbacks
    reuse = {} if reuse is None else reuse
    rows: list[dict] = []
    for name in teachers:
        if name == "human":
            have = turns.filter(pl.col("human_rewrite").is_not_null())
            if have.is_empty():
                raise DiscoError("teacher 'human' requested but the dataset has no human rewrites; "
                                 "set teacher.systems (e.g. --set 'teacher.systems=[\"llm\"]')")
            rows += [{"turn_id": t, "teacher": "human", "rewrite": r, "prompt_hash": "dataset"}
                     for t, r in zip(have["turn_id"], have["human_rewrite"])]
        elif name == "answer":
            have = turns.filter(pl.col("answer").is_not_null())
            rows += [{"turn_id": t, "teacher": "answer", "rewrite": f"{q} {a}", "prompt_hash": "dataset"}
                     for t, q, a in zip(have["turn_id"], have["question"], have["answer"])]
        elif name == rewrite.name:
            rows += _llm_rewrites(rewrite, turns, parts_root, progress, fallbacks, reuse)
        elif name == f"{rewrite.name}+answer":
            rows += _llm_rewrites(rewrite.with_answer(), turns, parts_root, progress, fallbacks, reuse)
        else:
            raise DiscoError(f"unknown teacher {name!r}: use 'human', 'answer', the LLM teacher's name "
                             f"({rewrite.name!r}, set by rewrite.name) or {rewrite.name + '+answer'!r}")
    return pl.DataFrame(rows, schema={f.name: pl.String for f in schema.REWRITES})


def _llm_rewrites(cfg: RewriteConfig, turns: pl.DataFrame, parts_root: Path, progress: Callable | None,
                  fallbacks: dict, reuse: dict | None = None) -> list[dict]:
    requests = turns.select(["turn_id", "question", "history"]).to_dicts()
    ph = prompt_hash(cfg)
    bar = progress("rewrite-progress", f"{cfg.name}: rewriting {len(requests)} turns with {cfg.model}",
                   len(requests)) if progress else None
    parts = parts_root / f"rewrite-llm-{ph}" / "parts"
    parts.parent.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    if distributed():  # shards of whole parts (the same batches as here), each resumable in its own folder
        size = cfg.shard_parts * CHUNK_BATCHES * cfg.batch_size
        shards = [(requests[a:b], cfg, str(parts.parent / f"shard-{a:07d}-{b:07d}"))
                  for a, b in bounds(len(requests), size)]
        done = []
        for rows, st in pmap(rewrite_shard, shards, "rewrite-llm"):
            done += rows
            for k, v in st.items():
                stats[k] = _merge(stats.get(k), v)
        if bar:
            bar(len(requests))
    else:
        done = rewrite_turns(requests, cfg, parts, progress=bar, stats=stats)
    if bar:
        bar.close()
    if cfg.output_checks:
        fallbacks[cfg.name] = {"turns": len(done), "fallback": stats["fallback"], **stats["fallback_reasons"]}
    if reuse is not None:
        reuse[cfg.name] = {"computed_turns": stats.get("generated", 0), "reused_turns": stats.get("skipped", 0)}
    return [{"turn_id": r["turn_id"], "teacher": cfg.name, "rewrite": r["rewrite"], "prompt_hash": ph}
            for r in done]


def rewrite_shard(turns: list[dict], cfg: RewriteConfig, parts_dir: str) -> tuple[list[dict], dict]:
    """One shard of LLM rewriting (whole parts of :func:`models.rewrite.rewrite_turns`): rows and stats."""
    stats: dict = {}
    return rewrite_turns(turns, cfg, Path(parts_dir), stats=stats), stats


def _merge(a, b):
    """Shard stats summed (numbers, and dicts of numbers key by key)."""
    if a is None:
        return b
    if isinstance(b, dict):
        return {k: _merge(a.get(k), v) for k, v in {**dict.fromkeys(a, 0), **b}.items()}
    return a + b


def rewrite_quality(turns: pl.DataFrame, table: pl.DataFrame) -> list[dict]:
    """Token F1 and exact match of each non-human teacher's rewrites against the human rewrites, where present."""
    human = dict(zip(*turns.filter(pl.col("human_rewrite").is_not_null()).select(["turn_id", "human_rewrite"])
                     .get_columns()))
    rows = []
    for name in sorted(set(table["teacher"]) - {"human"}):
        pairs = [(r, human[t]) for t, r in table.filter(pl.col("teacher") == name).select(["turn_id", "rewrite"])
                 .iter_rows() if t in human]
        if pairs:
            rows.append({"teacher": name, "turns": len(pairs),
                         "token_f1": round(sum(token_f1(r, h) for r, h in pairs) / len(pairs), 4),
                         "exact_match": round(sum(r.strip().lower() == h.strip().lower() for r, h in pairs)
                                              / len(pairs), 4)})
    return rows


def rewrite_samples(turns: pl.DataFrame, table: pl.DataFrame, n: int = 12) -> list[dict]:
    """Sample rewrites of each teacher next to each other (turns after the first, in a fixed hashed order)."""
    wide = table.pivot(on="teacher", index="turn_id", values="rewrite")
    sample = turns.select(["turn_id", "turn", "question"]).filter(pl.col("turn") > 1).join(wide, on="turn_id")
    return sample.sort(pl.col("turn_id").map_elements(sha256_text, return_dtype=pl.String)).head(n).to_dicts()
