from __future__ import annotations

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest
from flows._stage import stage
from flows.index import index_flow
from flows.ingest import ingest_flow
from flows.rewrite import rewrite_flow
from flows.teacher import teacher_flow
from tasks.distill import distill_task


@flow(name="distill", log_prints=True)
def distill_flow(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False,
                 data: Manifest | None = None, index: Manifest | None = None,
                 teachers: Manifest | None = None, rewrites: Manifest | None = None) -> Manifest:
    """Stage 5: train the student query encoder on conversations to reproduce the teacher's scores."""
    data = data or ingest_flow(config, out)
    index = index or index_flow(config, out, data=data)
    rewrites = rewrites or rewrite_flow(config, out, data=data)
    teachers = teachers or teacher_flow(config, out, data=data, rewrites=rewrites, index=index)
    return stage(distill_task, out, refresh)(out, config.encoder, config.distill, config.teacher,
                                             [data], [index], [teachers], [rewrites])
