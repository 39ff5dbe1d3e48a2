"""Settings of ``disco serve``: batching, threads, worker processes, Ray Serve replicas (without importing torch
or Ray: the command line reads them first)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from disco.serving.batching import BatchConfig


class RayConfig(BaseModel):
    """Where and how many replicas run."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(1, ge=1, le=256, description="replicas of the service (processes, each with the model)")
    address: str | None = Field(None, description="an existing Ray cluster (ray://host:10001 or host:6379, or "
                                                  "'auto'); None starts a local cluster for this service")
    replica_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each replica")
    object_store_mib: int = Field(128, ge=80, description="object store of a local cluster (requests do not use it)")


class ServeOptions(BaseModel):
    """How ``disco serve`` runs: batching, torch threads, worker processes or Ray Serve replicas."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "auto"
    batching: BatchConfig = BatchConfig(threads=1)
    workers: int = Field(1, ge=1, le=64, description="processes, each with its own model, on one port")
    pin_cpus: bool = Field(False, description="with workers > 1: each worker on its own share of this process's "
                                              "CPUs (Linux)")
    ray: RayConfig | None = Field(None, description="replicas on Ray Serve instead (disco/serving/ray_serve.py)")
    registry_uri: str | None = Field(None, description="the MLflow server of a registry:NAME@ALIAS model (default "
                                                       "MLFLOW_TRACKING_URI)")
    poll_s: float = Field(10.0, gt=0, le=86_400, description="how often a registry alias is checked for a new "
                                                             "version")
