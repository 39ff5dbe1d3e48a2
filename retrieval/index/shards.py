"""A corpus through the frozen SPLADE encoder into Pyserini JsonVectorCollection shards, resumably.

Shard ``i`` holds passages ``i * shard_size ..`` of the input in input order, as ``docs-{i:05d}.jsonl`` lines
``{"id", "contents": "", "vector": {token: int}}`` (weights ``round(w * scale)``: Pyserini's impact index needs
positive integers). Each shard is written to a temporary name and renamed when complete, so an interrupted run
leaves only whole shards, and a rerun skips the shards already there. ``.disco-encode.json`` records the settings and
the input; a rerun with other settings or another input stops instead of mixing vectors. The index stage
(:func:`retrieval.index.encode.encode_corpus`) and ``disco encode`` both call :func:`encode_shards`.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

from core.errors import DiscoError
from core.io import write_json
from models.splade import SparseVec, SpladeEncoder, impact_vector, vocab_tokens

SETTINGS = ".disco-encode.json"  # hidden: Anserini indexes every other file of the folder
# Passages encoded and held at a time (length-sorted batches are formed within it): memory stays bounded however
# large a shard (100,000 passages by default) is.
ENCODE_CHUNK = 4096


def shard_name(i: int) -> str:
    return f"docs-{i:05d}.jsonl"


def batched(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def write_lines(f, ids: list[str], reps: list[SparseVec], tokens: list[str], scale: int) -> list[int]:
    """Write the JsonVectorCollection lines of ``ids`` to the open file ``f``; return each passage's term count."""
    n_terms = []
    for doc_id, (t, w) in zip(ids, reps):
        vec = impact_vector(t, w, tokens, scale)
        f.write(json.dumps({"id": doc_id, "contents": "", "vector": vec}) + "\n")
        n_terms.append(len(vec))
    return n_terms


def write_shard(path: Path, ids: list[str], reps: list[SparseVec], tokens: list[str], scale: int) -> list[int]:
    """Write one shard atomically (line by line into a temporary name, then renamed); return the number of terms
    of each passage."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        n_terms = write_lines(f, ids, reps, tokens, scale)
    os.replace(tmp, path)
    return n_terms


def check_settings(out: Path, settings: dict) -> None:
    """Record ``settings`` in ``out/encode.json``, or stop if the shards there were made with others."""
    path = out / SETTINGS
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise DiscoError(f"{out} holds shards encoded with other settings ({what}); use another --output "
                             f"folder or delete it")
    elif any(out.glob("docs-*.jsonl")):
        raise DiscoError(f"{out} holds docs-*.jsonl shards without {SETTINGS}: not made by `disco encode`; use "
                         f"another --output folder")
    write_json(path, settings)


def check_shard(path: Path, count: int, first: str, last: str) -> None:
    """A finished shard kept on resume must hold the same passages as the input has there (its count, first and
    last id; read line by line)."""
    lines, have = 0, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            lines += 1
            if lines == 1:
                have.append(json.loads(line)["id"])
            end = line
    if lines:
        have.append(json.loads(end)["id"])
    if lines != count or have != [first, last]:
        raise DiscoError(f"{path} holds {lines} passages ({' .. '.join(map(str, have))}) but the input has "
                         f"{count} ({first} .. {last}) there: the input changed since it was written; "
                         f"use another --output folder")


def chunks(passages: Iterable[tuple[str, str]], shard_size: int, chunk: int | None = None
           ) -> Iterator[Iterator[list[tuple[str, str]]]]:
    """The passages as shards of ``shard_size``, each an iterator of lists of at most ``chunk`` passages: the
    input is read as it is encoded, never a whole shard at once."""
    it = iter(passages)
    while head := list(islice(it, 1)):
        shard = itertools.chain(head, islice(it, shard_size - 1))
        yield batched(shard, min(chunk or ENCODE_CHUNK, shard_size))
        for _ in shard:  # a caller that stopped early: skip the rest of this shard
            pass


def encode_shards(passages: Iterable[tuple[str, str]], enc: SpladeEncoder, out: Path, *, max_length: int,
                  batch_size: int, scale: int, shard_size: int, resume: bool = False,
                  on_shard: Callable[[list[str], list[SparseVec]], None] | None = None,
                  progress: Callable[[int], None] | None = None) -> dict:
    """Encode ``(id, text)`` pairs into ``out/docs-*.jsonl``; return counts and timings.

    With ``resume`` the shards already in ``out`` are kept (their passages are read and skipped); ``on_shard``
    gets the ids and float vectors of each newly encoded chunk (:data:`ENCODE_CHUNK` passages at most) in order;
    ``progress(n)`` the passages done so far. A shard is encoded chunk by chunk into its temporary file, renamed
    once whole.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".docs-*.jsonl.tmp"):  # a shard being written when an earlier run stopped
        stale.unlink()
    tokens = vocab_tokens(enc.tokenizer)
    stats = {"passages": 0, "encoded": 0, "skipped": 0, "shards": 0}
    n_terms: list[int] = []
    t0 = time.perf_counter()
    for i, shard in enumerate(chunks(passages, shard_size)):
        path = out / shard_name(i)
        stats["shards"] += 1
        if resume and path.exists():
            count, first, last = 0, None, None
            for part in shard:
                count, first, last = count + len(part), part[0][0] if first is None else first, part[-1][0]
            check_shard(path, count, first, last)
            stats["passages"] += count
            stats["skipped"] += count
            if progress:
                progress(stats["passages"])
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for part in shard:
                ids, texts = [p[0] for p in part], [p[1] for p in part]
                done = stats["passages"]
                reps = enc.encode(texts, max_length, batch_size,
                                  (lambda d, _t: progress(done + d)) if progress else None)
                n_terms += write_lines(f, ids, reps, tokens, scale)
                stats["passages"] += len(part)
                stats["encoded"] += len(part)
                if on_shard is not None:
                    on_shard(ids, reps)
                if progress:
                    progress(stats["passages"])
        os.replace(tmp, path)
    seconds = time.perf_counter() - t0
    return {**stats, "doc_terms_mean": sum(n_terms) / len(n_terms) if n_terms else 0.0,
            "doc_terms_max": max(n_terms, default=0), "encode_s": round(seconds, 2),
            "passages_per_s": round(stats["encoded"] / max(seconds, 1e-9), 1)}
