"""The fine-tuned rewriter's examples: public human rewrites, and the run's own training turns.

Sources (``rewriter.sources``):

- ``canard``: CANARD's dev file (Elgohary et al., EMNLP 2019; QuAC dialogs, 3,430 rewrites), with the Wikipedia
  title and section as the first history entry (``topic_in_history``: a rewrite names entities that only the
  topic gives). Its first conversations, up to ``canard_holdout_turns`` turns, are held out for reporting
  (``disco rewrite-eval canard-dev --limit N`` reads exactly those); the next ``dev_turns`` worth choose the
  training step; the rest trains.
- ``cast2019``, ``cast2019-train``, ``cast2022``: the manual rewrites of TREC CAsT 2019 (evaluation and training
  topics) and 2022. Never CAsT 2021: it is kept for reporting (``disco rewrite-eval cast2021``).
- ``own``: the human rewrites of the run's own ``train`` turns (never its dev or test turns).

Each example is the turn formatted exactly as the rewrite stage formats it (``rewrite.prompt``,
``rewrite.max_history_chars``), so the rewriter learns the prompt it will be given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from core.errors import DiscoError
from models.rewrite.config import RewriteConfig
from models.rewrite.prompt import build_messages
from models.rewriter.config import Example, RewriterConfig
from retrieval.rewrite_eval import known_datasets, slice_turns

PUBLIC = {"canard": ("canard-dev", {"topic_in_history": True}), "cast2019": ("cast2019", {}),
          "cast2019-train": ("cast2019", {"training": True}), "cast2022": ("cast2022", {})}


def _reader_turns(source: str) -> pl.DataFrame:
    from retrieval.datasets import get_reader

    name, extra = PUBLIC[source]
    fmt, path, options = known_datasets()[name]
    if not Path(path).exists():
        raise DiscoError(f"rewriter.sources: {source!r} needs {path} (absent here); drop it from rewriter.sources")
    rows = [{"id": f"{source}:{t.turn_id}", "conversation_id": t.conversation_id, "turn": t.turn,
             "question": t.question, "history": [{"role": r, "text": x} for r, x in t.history],
             "human_rewrite": t.human_rewrite}
            for t in get_reader(fmt, path, **{**options, **extra}).turns() if t.human_rewrite]
    return pl.DataFrame(rows)


def source_files(sources: list[str]) -> dict[str, str]:
    """Content hashes of the public files the sources read (the stage's outside inputs); a folder that several
    sources read (the CAsT years) is hashed once."""
    by_folder: dict[Path, str] = {}
    out = {}
    for source in sources:
        if source == "own":
            continue
        path = Path(known_datasets()[PUBLIC[source][0]][1])
        if path not in by_folder:
            h = hashlib.sha256()
            for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []:
                h.update(str(f.relative_to(path)).encode())
                h.update(f.read_bytes())
            by_folder[path] = h.hexdigest()[:16]
        out[source] = by_folder[path]
    return out


def canard_slices(cfg: RewriterConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(held out, dev, train) turns of CANARD, whole conversations in file order."""
    turns = _reader_turns("canard")
    held = slice_turns(turns, 0, cfg.canard_holdout_turns) if cfg.canard_holdout_turns else turns.clear()
    rest = turns.filter(~pl.col("conversation_id").is_in(held["conversation_id"].unique().implode()))
    dev = slice_turns(rest, 0, cfg.dev_turns)
    train = rest.filter(~pl.col("conversation_id").is_in(dev["conversation_id"].unique().implode()))
    return held, dev, train


def _examples(df: pl.DataFrame, source: str, rewrite: RewriteConfig) -> list[Example]:
    out = []
    for r in df.iter_rows(named=True):
        messages = build_messages(r["question"], [(h["role"], h["text"]) for h in r["history"] or []],
                                  rewrite.max_history_chars, "rewrite", rewrite.prompt)
        out.append(Example(id=r["id"], source=source, question=r["question"], messages=messages,
                           target=" ".join(str(r["human_rewrite"]).split())))
    return out


def build(cfg: RewriterConfig, rewrite: RewriteConfig, own_turns: list[pl.DataFrame] = ()
          ) -> tuple[list[Example], list[Example], dict[str, int]]:
    """(training examples, dev examples, examples per source). ``own_turns``: the ingest ``turns`` tables of the
    run's training datasets (their ``train`` turns with a human rewrite are used when ``own`` is a source)."""
    train: list[Example] = []
    dev: list[Example] = []
    counts: dict[str, int] = {}
    for source in dict.fromkeys(cfg.sources):
        if source == "canard":
            _, d, t = canard_slices(cfg)
            dev = _examples(d, "canard", rewrite)
            got = _examples(t, "canard", rewrite)
        elif source == "own":
            got = []
            for i, turns in enumerate(own_turns):
                mine = turns.filter((pl.col("split") == "train") & pl.col("human_rewrite").is_not_null()
                                    & (pl.col("human_rewrite").str.strip_chars() != ""))
                mine = mine.with_columns(pl.concat_str(pl.lit(f"own{i}:"), pl.col("turn_id")).alias("id"))
                got += _examples(mine, "own", rewrite)
        else:
            got = _examples(_reader_turns(source), source, rewrite)
        counts[source] = len(got)
        train += got
    if not train:
        raise DiscoError(f"rewriter: no training example in sources {cfg.sources}")
    return train, dev, counts
