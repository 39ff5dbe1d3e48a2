from __future__ import annotations

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest
from flows._stage import stage
from tasks.ingest import dataset_hash, ingest_task


@flow(name="ingest", log_prints=True)
def ingest_flow(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False) -> Manifest:
    """Stage 1: the dataset -> validated Parquet tables (turns with history and rewrites, corpus, qrels, splits)."""
    return stage(ingest_task, out, refresh)(out, config.data, dataset_hash(config.data))
