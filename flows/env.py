"""The environment a `disco` process runs Prefect in."""

from __future__ import annotations

import os

from core.paths import PREFECT_HOME


def prefect_env() -> None:
    """Use the project's Prefect home, so runs and artifacts of earlier runs show in `disco ui`."""
    os.environ.setdefault("PREFECT_HOME", str(PREFECT_HOME))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Prefect waits 20 s for its temporary server by default; a busy machine (a training run beside it) can need
    # more, and a timeout there fails the whole command before any work starts.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
