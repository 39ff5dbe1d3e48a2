"""LLM query rewriting (the LLM teachers of DiSCo): resumable over tens of thousands of turns.

    from models.rewrite import RewriteConfig, rewrite_turns, rewrites_table
    results = rewrite_turns(turns, RewriteConfig(), parts_dir)   # [{turn_id, rewrite, attempts}]
    table = rewrites_table(results, cfg)                          # core.schema.REWRITES

Turns are processed in chunks of ``8 * batch_size``; each finished chunk is written atomically to
``parts_dir/part-<n>.parquet`` (turn_id, rewrite, attempts, input_hash). A restarted run reads the parts,
skips the turns already there (same turn id and same prompt text) and numbers its new parts after the
existing ones. ``parts_dir/meta.json`` records the :func:`prompt_hash`: parts of another prompt or other
generation settings are deleted before anything is reused.

The vLLM backend runs one worker process for all remaining turns (a model load per chunk would cost
minutes); the worker journals its results to ``parts_dir/vllm/output.jsonl`` and the parent turns them
into the same parts while it runs, so both backends resume alike.

This package's ``__init__`` imports only the standard library and its stdlib + pydantic modules (config, prompt,
parse, retry, checks) at import time: the vLLM worker imports them from a venv without our other dependencies.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from models.rewrite.checks import check_rewrite
from models.rewrite.config import RewriteConfig
from models.rewrite.parse import postprocess
from models.rewrite.prompt import build_messages, input_hash, prompt_hash
from models.rewrite.retry import needs_retry

__all__ = [
    "RewriteConfig",
    "build_messages",
    "needs_retry",
    "postprocess",
    "prompt_hash",
    "rewrite_turns",
    "rewrites_table",
    "CHUNK_BATCHES",
]

log = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # a part holds 8 * batch_size turns
META = "meta.json"
PART_GLOB = "part-*.parquet"

Progress = Callable[[int, int], None]


def _part_number(path: Path) -> int:
    try:
        return int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _check_meta(parts_dir: Path, cfg: RewriteConfig) -> None:
    """Delete parts made with another prompt hash; record this one."""
    from core.io import write_json

    phash = prompt_hash(cfg)
    meta_path = parts_dir / META
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8")).get("prompt_hash")
        except (OSError, ValueError):
            old = None
        if old == phash:
            return
        log.warning("%s: parts were made with prompt hash %s, not %s: discarding them", parts_dir, old, phash)
    for p in parts_dir.glob(PART_GLOB):
        p.unlink()
    shutil.rmtree(parts_dir / "vllm", ignore_errors=True)
    write_json(meta_path, {"prompt_hash": phash, "config": cfg.model_dump(mode="json")})


def _read_parts(parts_dir: Path) -> tuple[dict[str, dict], int]:
    """Rows of every part by turn id (later parts win), and the next free part number."""
    import pyarrow.parquet as pq

    done: dict[str, dict] = {}
    last = -1
    for p in sorted(parts_dir.glob(PART_GLOB), key=_part_number):
        last = max(last, _part_number(p))
        for row in pq.read_table(p).to_pylist():
            done[row["turn_id"]] = row
    return done, last + 1


class _PartWriter:
    """Buffers finished rows; writes a part each ``chunk`` rows (and on flush)."""

    def __init__(self, parts_dir: Path, next_part: int, chunk: int):
        self.parts_dir = parts_dir
        self.next_part = next_part
        self.chunk = chunk
        self.buffer: list[dict] = []
        self.written = 0

    def add(self, rows: list[dict]) -> None:
        self.buffer.extend(rows)
        while len(self.buffer) >= self.chunk:
            self._write(self.buffer[: self.chunk])
            self.buffer = self.buffer[self.chunk :]

    def flush(self) -> None:
        if self.buffer:
            self._write(self.buffer)
            self.buffer = []

    def _write(self, rows: list[dict]) -> None:
        import pyarrow as pa

        from core.io import write_parquet

        table = pa.Table.from_pylist(rows, schema=_part_schema())
        write_parquet(self.parts_dir / f"part-{self.next_part:05d}.parquet", table)
        self.next_part += 1
        self.written += 1


def _part_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("turn_id", pa.string()),
            ("rewrite", pa.string()),
            ("attempts", pa.int32()),
            ("input_hash", pa.string()),
        ]
    )


def rewrite_turns(
    turns: list[dict],
    cfg: RewriteConfig,
    parts_dir: str | Path,
    progress: Progress | None = None,
    *,
    rewriter: Any = None,
    stats: dict | None = None,
    chunk_size: int | None = None,
) -> list[dict]:
    """Rewrite each turn (``turn_id``, ``question``, ``history`` oldest first) with the LLM of ``cfg``.

    Returns ``[{turn_id, rewrite, attempts}]`` in the order of ``turns``. Resumable: see the module
    docstring. With ``cfg.output_checks``, a rewrite failing :func:`~models.rewrite.checks.check_rewrite` is
    replaced by the turn's question (``fallback`` holds the reason, else None; counted in ``stats``).
    ``progress(done, total)`` is called at the start and after each part. ``rewriter`` is an
    already loaded :class:`~models.rewrite.hf.HFRewriter` for ``cfg`` (transformers backend only; else one
    is loaded, and only when some turn is left to do; one loaded for other generation settings of the same
    model is reused through ``with_config``). ``chunk_size`` overrides the turns per part
    (default ``8 * batch_size``). ``stats``, when given, is filled with ``total``,
    ``skipped`` (taken from parts), ``generated``, ``retried``, ``parts_written``, ``generate_calls``, ``fallback`` and ``fallback_reasons``.
    """
    from core.errors import DiscoError

    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    _check_meta(parts_dir, cfg)

    requests: list[dict] = []
    seen: set[str] = set()
    for t in turns:
        tid = str(t["turn_id"])
        if tid in seen:
            raise DiscoError(f"rewrite_turns: turn id {tid!r} appears twice")
        seen.add(tid)
        try:
            messages = build_messages(t["question"], t.get("history") or [], cfg.max_history_chars, cfg.mode,
                                      cfg.prompt)
        except ValueError as e:
            raise DiscoError(f"rewrite_turns: turn {tid!r}: {e}") from None
        requests.append({"id": tid, "messages": messages, "input_hash": input_hash(messages)})

    done, next_part = _read_parts(parts_dir)
    todo = [r for r in requests if done.get(r["id"], {}).get("input_hash") != r["input_hash"]]
    total = len(requests)
    st = {"total": total, "skipped": total - len(todo), "generated": 0, "retried": 0, "parts_written": 0,
          "generate_calls": 0}
    if progress:
        progress(total - len(todo), total)

    chunk = chunk_size or CHUNK_BATCHES * cfg.batch_size
    writer = _PartWriter(parts_dir, next_part, chunk)
    finished = total - len(todo)

    def accept(rows: list[dict]) -> None:
        nonlocal finished
        before = writer.written
        writer.add(rows)
        for row in rows:
            done[row["turn_id"]] = row
        finished += len(rows)
        st["generated"] += len(rows)
        st["retried"] += sum(1 for r in rows if r["attempts"] > 1)
        if progress and writer.written != before:
            progress(finished, total)

    if todo:
        if cfg.backend == "transformers":
            if rewriter is None:
                from models.rewrite.hf import HFRewriter

                rewriter = HFRewriter(cfg)
            elif rewriter.cfg != cfg:
                rewriter = rewriter.with_config(cfg)
            calls_before = rewriter.generate_calls
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                outs = rewriter.rewrite([r["messages"] for r in batch])
                accept(
                    [
                        {"turn_id": r["id"], "rewrite": text, "attempts": n, "input_hash": r["input_hash"]}
                        for r, (text, n) in zip(batch, outs)
                    ]
                )
            st["generate_calls"] = rewriter.generate_calls - calls_before
        elif cfg.backend == "vllm":
            from models.rewrite.vllm_backend import run_vllm

            def on_rows(rows: list[dict]) -> None:
                accept(
                    [
                        {"turn_id": r["id"], "rewrite": r["rewrite"], "attempts": int(r["attempts"]),
                         "input_hash": r["input_hash"]}
                        for r in rows
                    ]
                )

            worker_stats = run_vllm(todo, cfg, parts_dir / "vllm", on_rows)
            st["generate_calls"] = worker_stats.get("generate_calls", 0)
        else:  # pydantic already restricts this
            raise DiscoError(f"unknown rewrite backend {cfg.backend!r}")
        writer.flush()
        if progress:
            progress(finished, total)
    st["parts_written"] = writer.written

    missing = [r["id"] for r in requests if done.get(r["id"], {}).get("input_hash") != r["input_hash"]]
    if missing:
        raise DiscoError(f"rewrite_turns: {len(missing)} turns got no rewrite (first: {missing[0]!r})")
    results = []
    reasons: dict[str, int] = {}
    for r, t in zip(requests, turns):
        # Cached parts hold the text as post-processed by the code that wrote them: clean it again with
        # today's rules (idempotent on clean text), so a fixed rule applies without generating again.
        text = done[r["id"]]["rewrite"]
        if cfg.mode == "rewrite":
            text = postprocess(text) or text
        why = check_rewrite(text, str(t["question"])) if cfg.output_checks and cfg.mode == "rewrite" else None
        if why:
            reasons[why] = reasons.get(why, 0) + 1
            text = " ".join(str(t["question"]).split())
        results.append({"turn_id": r["id"], "rewrite": text, "attempts": int(done[r["id"]]["attempts"]),
                        "fallback": why})
    st["fallback"] = sum(reasons.values())
    st["fallback_reasons"] = reasons
    if stats is not None:
        stats.update(st)
    return results


def rewrites_table(results: list[dict], cfg: RewriteConfig):
    """The REWRITES table (turn_id, teacher, rewrite, prompt_hash) of :func:`rewrite_turns`' results."""
    import pyarrow as pa

    from core.schema import REWRITES

    phash = prompt_hash(cfg)
    return pa.Table.from_pylist(
        [{"turn_id": r["turn_id"], "teacher": cfg.name, "rewrite": r["rewrite"], "prompt_hash": phash}
         for r in results],
        schema=REWRITES,
    )
