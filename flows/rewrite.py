from __future__ import annotations

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest
from flows._stage import stage
from flows.ingest import ingest_flow
from tasks.rewrite import rewrite_task


@flow(name="rewrite", log_prints=True)
def rewrite_flow(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False,
                 data: Manifest | None = None) -> Manifest:
    """Stage 2: LLM rewrites of every turn (vLLM or transformers), beside the dataset's human rewrites."""
    data = data or ingest_flow(config, out)
    return stage(rewrite_task, out, refresh)(out, config.rewrite, config.teacher.teachers, data)
