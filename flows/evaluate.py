from __future__ import annotations

from prefect import flow

from disco.config import PipelineConfig
from disco.io import Manifest
from flows._stage import stage
from flows.distill import distill_flow
from flows.index import index_flow
from flows.ingest import ingest_flow
from flows.teacher import teacher_flow
from tasks.evaluate import evaluate_task, publish


@flow(name="evaluate", log_prints=True)
def evaluate_flow(config: PipelineConfig = PipelineConfig(), out: str = "runs/demo", refresh: bool = False,
                  data: Manifest | None = None, index: Manifest | None = None, teachers: Manifest | None = None,
                  student: Manifest | None = None) -> Manifest:
    """Stage 6: the student and the baselines on held-out turns: RR@10, nDCG@3, R@10, R@100, efficiency."""
    data = data or ingest_flow(config, out)
    index = index or index_flow(config, out, data=data)
    teachers = teachers or teacher_flow(config, out, data=data, index=index)
    student = student or distill_flow(config, out, data=data, index=index, teachers=teachers)
    report = stage(evaluate_task, out, refresh)(out, config.encoder, config.evaluate, data, index, teachers, student)
    publish(report, out)  # <out>/metrics.json, report.md, metrics.png: the run's stable entry points
    return report
