"""``disco encode``: a corpus through the frozen SPLADE encoder into Pyserini JsonVectorCollection files.

The same code as the index stage (:func:`retrieval.index.shards.encode_shards`): integer impacts
(``round(w * scale)``), one ``docs-NNNNN.jsonl`` per shard, each written whole and atomically, so a rerun after
an interruption skips the finished shards. Index the folder with Pyserini::

    python -m pyserini.index.lucene --collection JsonVectorCollection --input DIR --index INDEX \\
        --generator DefaultLuceneDocumentGenerator --impact --pretokenized

Heavy imports (torch, transformers) happen inside the command, so ``disco --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from core.errors import DiscoError


def encode(
    input: Path = typer.Option(..., "--input", help="JSONL of {id, contents} lines, an ingested corpus.parquet, "
                                                    "or a dataset folder (with --format)"),
    output: Path = typer.Option(..., "--output", help="folder for docs-NNNNN.jsonl (JsonVectorCollection)"),
    model: str = typer.Option("splade-tiny", help="SPLADE weights: a short name, a folder or a hub id"),
    batch_size: int = typer.Option(32, min=1, help="passages per forward pass"),
    max_length: int = typer.Option(256, min=8, help="tokens per passage (the rest is cut)"),
    format: Optional[str] = typer.Option(None, help="dataset format of a folder (mtrag, topiocqa, ...)"),
    id_field: str = typer.Option("id", help="JSONL field of the passage id"),
    text_field: str = typer.Option("contents", help="JSONL field of the passage text"),
    title_field: Optional[str] = typer.Option(None, help="JSONL field of a title, read as 'title. text'"),
    shard_size: int = typer.Option(10_000, min=1, help="passages per output file (the unit of resuming)"),
    scale: int = typer.Option(100, min=1, help="impact = round(weight * scale)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
) -> None:
    """Encode passages into Pyserini JsonVectorCollection files with integer impacts (resumable by shard)."""
    try:
        stats = run_encode(input, output, model=model, batch_size=batch_size, max_length=max_length,
                           format=format, id_field=id_field, text_field=text_field, title_field=title_field,
                           shard_size=shard_size, scale=scale, progress=progress)
    except DiscoError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo(f"{stats['passages']} passages in {stats['shards']} shards -> {output} "
               f"({stats['encoded']} encoded, {stats['skipped']} already there; "
               f"{stats['passages_per_s']} passages/s)")


def run_encode(input: Path, output: Path, *, model: str, batch_size: int, max_length: int, format: str | None,
               id_field: str, text_field: str, title_field: str | None, shard_size: int, scale: int,
               progress: bool) -> dict:
    """Check the input and the output folder's settings, then encode; return the counts."""
    from retrieval.index.passages import PassageSource, count, read_passages
    from retrieval.index.shards import check_settings

    source = PassageSource(path=str(input), format=format, id_field=id_field, text_field=text_field,
                           title_field=title_field)
    if not input.exists():
        raise DiscoError(f"{input}: input not found")
    total = count(source)
    passages = read_passages(source)
    first = next(passages, None)  # bad input (or a bad format name) fails here, before the model loads
    if first is None:
        raise DiscoError(f"{input}: no passages")
    settings = {"model": model, "max_length": max_length, "scale": scale, "shard_size": shard_size,
                "input": source.describe()}
    check_settings(output, settings)
    import itertools

    from models.splade import SpladeEncoder
    from retrieval.index.shards import encode_shards

    enc = SpladeEncoder(model, frozen=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="passage", file=sys.stderr, desc="encode", dynamic_ncols=True)
    try:
        return encode_shards(itertools.chain([first], passages), enc, output, max_length=max_length,
                             batch_size=batch_size, scale=scale, shard_size=shard_size, resume=True,
                             progress=(lambda n: bar.update(n - bar.n)) if bar else None)
    finally:
        if bar:
            bar.close()
