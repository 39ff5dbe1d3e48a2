"""Shards on a cluster: each shard of :func:`core.parallel.pmap` (corpus encoding, teacher retrieval, LLM
rewriting) as a Prefect task on the flow's task runner, prefect-ray's ``RayTaskRunner`` (``runner.kind=ray``).

The stage itself stays one cached task in the flow's process; only its shards go to the cluster, each visible in
the UI as a task run ``<what>-<i>`` inside the stage's task. Shard functions write their files where the stage's
folder is, so a cluster of several machines needs ``out`` on shared storage (README, "Team setup").
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.errors import DiscoError
from core.parallel import Mapper
from core.paths import ROOT
from stages.config import RunnerConfig


@task(name="shard", cache_policy=NO_CACHE, persist_result=False)
def shard(fn: Callable[..., Any], args: tuple) -> Any:
    """One shard: ``fn(*args)`` on whichever worker the task runner picks."""
    return fn(*args)


def flow_mapper() -> Mapper | None:
    """The mapper for this flow run: shards as tasks on its Ray task runner; None (here, serially) otherwise."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or type(ctx.task_runner).__name__ != "RayTaskRunner":
        return None

    def mapper(fn: Callable[..., Any], items: Sequence[tuple], name: str) -> list:
        futures = [shard.with_options(task_run_name=f"{name}-{i}").submit(fn, args) for i, args in enumerate(items)]
        return [f.result() for f in futures]

    return mapper


def task_runner(cfg: RunnerConfig):
    """The flow's task runner for ``cfg``: None (Prefect's default) for ``local``, else a ``RayTaskRunner`` on
    ``cfg.address`` or on a local cluster of ``cfg.workers`` CPUs started for the run."""
    if cfg.kind == "local":
        return None
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise DiscoError("runner.kind=ray needs prefect-ray and ray: pip install -e '.[ray]'") from None

    env = {"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    if cfg.address:
        return RayTaskRunner(address=cfg.address, init_kwargs={"runtime_env": {"env_vars": env}})
    return RayTaskRunner(init_kwargs={"num_cpus": cfg.workers, "include_dashboard": False,
                                      "runtime_env": {"env_vars": env}})
