"""The student registry: MLflow's tracking server and model registry.

Every trained student of continuous distillation is an MLflow run (its config as parameters, data fingerprints
and stage keys as tags, dev and test measures and the gate's figures as metrics, the student folder, the
config, the metrics and the gate's table as artifacts) and a version of a registered model whose alias
(``production``) names the student in service. ``disco serve registry:NAME@production`` follows that alias.

The server is a real ``mlflow server`` (SQLite backend, artifacts proxied by the server: ``make mlflow`` starts
one; it lives in its own environment, ``.venv-mlflow``, because the full ``mlflow`` package pins a pyarrow older
than this project's); this side uses the ``mlflow-skinny`` client, imported only when the registry is used.
A reference is ``registry:NAME@ALIAS`` or ``registry:NAME/VERSION``; the server is ``MLFLOW_TRACKING_URI`` or
given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import DiscoError
from core.io import atomic_path

PREFIX = "registry:"
_REF = re.compile(r"registry:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,99})(?:@(?P<alias>[A-Za-z][A-Za-z0-9_-]{0,99})"
                  r"|/(?P<version>[0-9]+))")
DEFAULT_URI = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Ref:
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}@{self.alias}" if self.alias else f"{PREFIX}{self.name}/{self.version}"


def parse_ref(text: str) -> Ref:
    """``registry:NAME@ALIAS`` or ``registry:NAME/VERSION``; anything else is a one-line error."""
    m = _REF.fullmatch(str(text))
    if not m:
        raise DiscoError(f"{text!r}: a registry reference is registry:NAME@ALIAS (e.g. registry:disco-demo@production) "
                         "or registry:NAME/VERSION")
    return Ref(m["name"], m["alias"], m["version"])


@dataclass
class Version:
    """One registered student: its version number, tags and artifact location."""

    name: str
    version: str
    source: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def metric_name(text: str) -> str:
    """An MLflow metric key for a measure name (``RR@10`` -> ``RR_at_10``)."""
    return re.sub(r"[^\w.\- /]", "_", text.replace("@", "_at_"))


def flat(obj: Any, prefix: str = "") -> dict[str, str]:
    """A config as MLflow parameters: dotted keys, JSON values (each at most 500 characters)."""
    if isinstance(obj, dict) and obj:
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return {prefix: text[:500]}


class Registry:
    """The MLflow server at ``uri`` (default ``MLFLOW_TRACKING_URI``), for the registered model ``name``."""

    def __init__(self, name: str, uri: str | None = None, experiment: str | None = None):
        self.name = name
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
        self.experiment = experiment or name
        self._client = None

    @property
    def client(self):
        if self._client is None:
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
            from mlflow import MlflowClient

            self._client = MlflowClient(self.uri, self.uri)
            self.check()
        return self._client

    def check(self) -> None:
        """That the server answers (else a one-line error naming it)."""
        import httpx

        try:
            httpx.get(self.uri.rstrip("/") + "/health", timeout=10).raise_for_status()
        except httpx.HTTPError as e:
            raise DiscoError(f"no MLflow server answers at {self.uri} ({type(e).__name__}): start one with `make "
                             "mlflow` (or `mlflow server`) and set MLFLOW_TRACKING_URI or --registry-uri") from None

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            try:
                self.client.create_registered_model(self.name, description="DiSCo students of continuous "
                                                                            "distillation (alias production: served)")
            except MlflowException:  # created meanwhile by another run
                pass

    def record(self, student: str | Path, *, params: dict[str, str], tags: dict[str, str],
               metrics: dict[str, float], artifacts: dict[str, str | Path], run_name: str) -> Version:
        """Log one trained student as an MLflow run and register it as a new version (not promoted)."""
        from mlflow.entities import Metric, Param, RunTag

        c = self.client
        exp = c.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else c.create_experiment(self.experiment)
        run = c.create_run(exp_id, run_name=run_name)
        rid = run.info.run_id
        now = int(time.time() * 1000)
        items = sorted(params.items())
        for a in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            c.log_batch(rid, params=[Param(k[:250], v) for k, v in items[a:a + 100]])
        c.log_batch(rid, metrics=[Metric(metric_name(k), float(v), now, 0) for k, v in sorted(metrics.items())],
                    tags=[RunTag(k, str(v)[:5000]) for k, v in sorted(tags.items())])
        c.log_artifacts(rid, str(student), "student")
        for where, path in artifacts.items():
            p = Path(path)
            if p.is_dir():
                c.log_artifacts(rid, str(p), where)
            elif p.exists():
                c.log_artifact(rid, str(p), where)
        c.set_terminated(rid)
        self._ensure_model()
        source = c.get_run(rid).info.artifact_uri + "/student"
        mv = c.create_model_version(self.name, source, run_id=rid,
                                    tags={k: str(v)[:5000] for k, v in tags.items()},
                                    description=tags.get("description"))
        return Version(self.name, str(mv.version), source, rid, dict(mv.tags or {}))

    def set_tags(self, version: Version, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(self.name, version.version, k, str(v)[:5000])
            if version.run_id:
                self.client.set_tag(version.run_id, k, str(v)[:5000])

    def log_metrics(self, version: Version, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if version.run_id and metrics:
            now = int(time.time() * 1000)
            self.client.log_batch(version.run_id, metrics=[Metric(metric_name(k), float(v), now, 0)
                                                           for k, v in sorted(metrics.items())])

    def promote(self, version: Version, alias: str = "production") -> None:
        self.client.set_registered_model_alias(self.name, alias, version.version)

    def get(self, alias: str | None = None, version: str | None = None) -> Version | None:
        """The version an alias names (None when the model or the alias does not exist yet), or a version."""
        from mlflow.exceptions import MlflowException

        try:
            mv = (self.client.get_model_version_by_alias(self.name, alias) if alias
                  else self.client.get_model_version(self.name, str(version)))
        except MlflowException as e:
            if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return Version(self.name, str(mv.version), mv.source, mv.run_id, dict(mv.tags or {}))

    def resolve(self, ref: Ref) -> Version | None:
        return self.get(alias=ref.alias, version=ref.version)

    def versions(self) -> list[Version]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted((Version(self.name, str(m.version), m.source, m.run_id, dict(m.tags or {})) for m in found),
                      key=lambda v: int(v.version))

    def download(self, version: Version, cache: str | Path) -> Path:
        """The version's student folder, downloaded once into ``cache/<name>-v<version>/`` (atomically)."""
        import mlflow.artifacts

        final = Path(cache) / f"{self.name}-v{version.version}"
        if (final / "student").is_dir():
            return final / "student"
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp),
                                                tracking_uri=self.uri)
            got = tmp / Path(version.source).name
            if got.name != "student":
                shutil.move(str(got), str(tmp / "student"))
        return final / "student"
