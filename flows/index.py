from __future__ import annotations

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest
from flows._stage import stage
from flows.ingest import ingest_flow
from tasks.index import index_task


@flow(name="index", log_prints=True)
def index_flow(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False,
               data: Manifest | None = None) -> Manifest:
    """Stage 3: encode the corpus with the frozen document encoder into a Lucene impact index."""
    data = data or ingest_flow(config, out)
    return stage(index_task, out, refresh)(out, config.encoder, config.index, data)
