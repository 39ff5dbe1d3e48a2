"""``disco deploy``: the deployments of prefect.yaml, registered and served from one process (Prefect's ``serve``).

prefect.yaml stays the one description of the deployments (names, entrypoints, default parameters, schedules);
this reads it and serves the flows it names, so the single-machine route and the team route
(``prefect work-pool create disco --type process``, ``prefect deploy --all``, ``prefect worker start --pool
disco``) register the same deployments with the same schedules. Served runs execute in a subprocess each (a fresh
process frees GPU memory after vLLM or training), at most ``limit`` at a time.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import yaml

from core.errors import DiscoError
from core.paths import ROOT

PREFECT_YAML = ROOT / "prefect.yaml"
DEFAULT_API = "http://127.0.0.1:4200/api"


def read_spec(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The deployments of ``path`` (prefect.yaml), each checked to name a flow of this project."""
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DiscoError(f"{path}: cannot read the deployments ({e})") from None
    deployments = (spec or {}).get("deployments") if isinstance(spec, dict) else None
    if not deployments:
        raise DiscoError(f"{path}: no `deployments:` list")
    for i, d in enumerate(deployments):
        for field in ("name", "entrypoint"):
            if not isinstance(d.get(field), str):
                raise DiscoError(f"{path}: deployment {i + 1}: `{field}` is missing")
    return deployments


def load_flow(entrypoint: str, where: str = "prefect.yaml"):
    """The flow object of ``flows/<module>.py:<name>`` (imported as a module of this package)."""
    from prefect import Flow

    file, _, name = entrypoint.partition(":")
    module = file.removesuffix(".py").replace("/", ".")
    try:
        flow = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise DiscoError(f"{where}: entrypoint {entrypoint!r} cannot be loaded ({e})") from None
    if not isinstance(flow, Flow):
        raise DiscoError(f"{where}: entrypoint {entrypoint!r} is not a Prefect flow")
    return flow


def schedules(d: dict[str, Any]) -> list:
    """The deployment's schedules as written (cron + timezone, or interval in seconds)."""
    from prefect.schedules import Cron, Interval

    out = []
    for s in d.get("schedules") or []:
        active = s.get("active", True)
        if "cron" in s:
            out.append(Cron(s["cron"], timezone=s.get("timezone"), active=active))
        elif "interval" in s:
            out.append(Interval(s["interval"], timezone=s.get("timezone"), active=active))
        else:
            raise DiscoError(f"prefect.yaml: deployment {d['name']!r}: only cron and interval schedules are served")
    return out


def runner_deployments(path: Path = PREFECT_YAML) -> list:
    """One :class:`prefect.deployments.runner.RunnerDeployment` per deployment of ``path``."""
    out = []
    for d in read_spec(path):
        flow = load_flow(d["entrypoint"], str(path))
        out.append(flow.to_deployment(name=d["name"], description=d.get("description"),
                                      parameters=d.get("parameters") or {}, schedules=schedules(d),
                                      tags=d.get("tags")))
    return out


def check_api() -> str:
    """The Prefect API URL (``PREFECT_API_URL``, default: the one ``disco ui`` starts), after checking it answers."""
    import httpx

    url = os.environ.setdefault("PREFECT_API_URL", DEFAULT_API)
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        raise DiscoError(f"no Prefect server answers at {url} ({type(e).__name__}): start one with `disco ui` "
                         "(or `prefect server start`) and set PREFECT_API_URL to its /api address") from None
    return url


def serve(path: Path = PREFECT_YAML, limit: int = 1) -> None:
    """Register the deployments of ``path`` on the server and run their flow runs until interrupted."""
    from prefect import serve as prefect_serve

    deployments = runner_deployments(path)
    url = check_api()
    print(f"serving {len(deployments)} deployments on {url} (at most {limit} run(s) at a time): "
          + ", ".join(f"{d.flow_name}/{d.name}" for d in deployments), flush=True)
    prefect_serve(*deployments, limit=limit)
