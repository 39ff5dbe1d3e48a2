from __future__ import annotations

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest
from flows._stage import stage
from flows.index import index_flow
from flows.ingest import ingest_flow
from flows.rewrite import rewrite_flow
from tasks.teacher import teacher_task


@flow(name="teacher", log_prints=True)
def teacher_flow(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False,
                 data: Manifest | None = None, rewrites: Manifest | None = None,
                 index: Manifest | None = None) -> Manifest:
    """Stage 4: each teacher's rewrites through the frozen encoder -> top-k runs with scores; fused teachers."""
    data = data or ingest_flow(config, out)
    rewrites = rewrites or rewrite_flow(config, out, data=data)
    index = index or index_flow(config, out, data=data)
    return stage(teacher_task, out, refresh)(out, config.encoder, config.teacher, rewrites, index)
