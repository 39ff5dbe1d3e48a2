"""Rewrite task: the teachers' query texts for every turn.

Teachers: ``human`` (the dataset's rewrites), ``answer`` (privileged: the question followed by the dataset's
reference answer, which the student never sees), the LLM teacher named by ``RewriteConfig.teacher`` (vLLM or
transformers ``generate``; resumable: finished chunks are kept under ``<out>/work/``), and ``<that name>+answer``
(e.g. ``llm+answer``): the same LLM writing a rewrite and a short answer of its own (LLM4CS-style expansion).
"""

from __future__ import annotations

import polars as pl
from prefect import task

from disco import schema
from disco.errors import DiscoError
from disco.evaluation import token_f1
from disco.io import Manifest, atomic_path, sha256_text, write_parquet
from models.rewrite import rewrite_turns
from models.rewrite.prompt import RewriteConfig, prompt_hash
from tasks.common import Progress, StageCache, link_artifacts, manifest, stage_dir, table_artifact, work_dir

DATASET_TEACHERS = ("human", "answer")


@task(name="rewrite", cache_policy=StageCache(stage="rewrite"), persist_result=True, result_serializer="json")
def rewrite_task(out: str, rewrite: RewriteConfig, teachers: list[str], data: Manifest) -> Manifest:
    key, final = stage_dir("rewrite", out, {"rewrite": rewrite, "teachers": teachers, "data": data})
    turns = pl.read_parquet(data["turns"])
    rows: list[dict] = []
    fallbacks: dict[str, dict] = {}  # LLM teacher -> rewrites replaced by the utterance (output checks), by reason
    for name in teachers:
        if name == "human":
            have = turns.filter(pl.col("human_rewrite").is_not_null())
            if have.is_empty():
                raise DiscoError("teacher 'human' requested but the dataset has no human rewrites; "
                                 "set teacher.teachers (e.g. --set 'teacher.teachers=[\"llm\"]')")
            rows += [{"turn_id": t, "teacher": "human", "rewrite": r, "prompt_hash": "dataset"}
                     for t, r in zip(have["turn_id"], have["human_rewrite"])]
        elif name == "answer":
            have = turns.filter(pl.col("answer").is_not_null())
            rows += [{"turn_id": t, "teacher": "answer", "rewrite": f"{q} {a}", "prompt_hash": "dataset"}
                     for t, q, a in zip(have["turn_id"], have["question"], have["answer"])]
        elif name == rewrite.teacher:
            rows += _llm_rewrites(out, rewrite, turns, fallbacks)
        elif name == f"{rewrite.teacher}+answer":
            rows += _llm_rewrites(out, rewrite.with_answer(), turns, fallbacks)
        else:
            raise DiscoError(f"unknown teacher {name!r}: use 'human', 'answer', the LLM teacher's name "
                             f"({rewrite.teacher!r}, set by rewrite.teacher) or {rewrite.teacher + '+answer'!r}")
    table = pl.DataFrame(rows, schema={f.name: pl.String for f in schema.REWRITES})
    with atomic_path(final) as tmp:
        tmp.mkdir()
        write_parquet(tmp / "rewrites.parquet", table.to_arrow().cast(schema.REWRITES))
    counts = table.group_by("teacher").len().sort("teacher").to_dicts()
    quality = _quality(turns, table)
    m = manifest("rewrite", key, final, {"rewrites": ("rewrites.parquet", len(table))},
                 {"teachers": counts, "quality": quality, "fallbacks": fallbacks})
    if quality:
        table_artifact("rewrite-quality", quality, "each teacher's rewrites against the dataset's human rewrites")
    _samples_artifact(turns, table)
    link_artifacts("rewrite", m)
    return m


def _llm_rewrites(out: str, cfg: RewriteConfig, turns: pl.DataFrame, fallbacks: dict[str, dict]) -> list[dict]:
    requests = turns.select(["turn_id", "question", "history"]).to_dicts()
    bar = Progress("rewrite-progress", f"{cfg.teacher}: rewriting {len(requests)} turns with {cfg.model}",
                   len(requests))
    # Parts are keyed by the prompt hash, not the stage key: a change elsewhere in the stage (e.g. another
    # teacher added) reuses the LLM's finished rewrites; each part row also carries its input's hash.
    ph = prompt_hash(cfg)
    stats: dict = {}
    done = rewrite_turns(requests, cfg, work_dir("rewrite-llm", out, ph) / "parts", progress=bar, stats=stats)
    bar.close()
    if cfg.output_checks:
        fallbacks[cfg.teacher] = {"turns": len(done), "fallback": stats["fallback"], **stats["fallback_reasons"]}
    return [{"turn_id": r["turn_id"], "teacher": cfg.teacher, "rewrite": r["rewrite"], "prompt_hash": ph}
            for r in done]


def _quality(turns: pl.DataFrame, table: pl.DataFrame) -> list[dict]:
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


def _samples_artifact(turns: pl.DataFrame, table: pl.DataFrame, n: int = 12) -> None:
    """Sample rewrites of each teacher next to each other (and to the human ones, when present)."""
    wide = table.pivot(on="teacher", index="turn_id", values="rewrite")
    sample = turns.select(["turn_id", "turn", "question"]).filter(pl.col("turn") > 1).join(wide, on="turn_id")
    sample = sample.sort(pl.col("turn_id").map_elements(sha256_text, return_dtype=pl.String)).head(n)
    table_artifact("rewrite-samples", sample.to_dicts(), "sample rewrites per teacher (turns after the first)")
