"""Build a Lucene impact index from a JsonVectorCollection with Anserini (run as its own process).

Usage: ``python -m retrieval.index.build COLLECTION_DIR INDEX_DIR THREADS [PARENT_PID]``. The parent calls :func:`build_index`,
which runs this module in a subprocess so the indexing JVM's memory is returned when it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.errors import DiscoError
from core.proc import die_with_parent
from retrieval.index.java import java_env, setup_java


def build_index(collection_dir: Path, index_dir: Path, threads: int = 1) -> None:
    """Index ``collection_dir`` (JSONL of ``{"id", "contents", "vector"}``) into ``index_dir``."""
    env = {**os.environ, **java_env()}
    cmd = [sys.executable, "-m", "retrieval.index.build", str(collection_dir), str(index_dir), str(threads)]
    cmd.append(str(os.getpid()))  # the child dies with this process (die_with_parent): no JVM left indexing
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not any(index_dir.glob("segments_*")):
        # the last lines that say something (not the stack frames of a Python or Java traceback)
        lines = [x for x in (proc.stdout + proc.stderr).strip().splitlines()
                 if x.strip() and not x.lstrip().startswith(("File ", "at ", "Traceback", "..."))]
        tail = "\n  ".join(lines[-3:])
        raise DiscoError(f"Lucene indexing of {collection_dir} failed (exit {proc.returncode}):\n  {tail}")


def _main(collection_dir: str, index_dir: str, threads: str, parent: str | None = None) -> None:
    if parent:  # the kernel kills this process (and its JVM) when the pipeline ends, however it ends: a killed
        die_with_parent(int(parent))  # pipeline leaves no JVM indexing into a deleted folder
    setup_java()
    from pyserini.pyclass import autoclass  # puts Anserini's jar on the classpath, then starts the JVM

    args = [
        "-collection", "JsonVectorCollection",
        "-input", collection_dir,
        "-index", index_dir,
        "-generator", "DefaultLuceneDocumentGenerator",
        "-impact", "-pretokenized",
        "-threads", threads,
    ]
    autoclass("io.anserini.index.IndexCollection").main(args)


if __name__ == "__main__":
    _main(*sys.argv[1:5])
