"""Shards on a cluster: each shard of :func:`core.parallel.pmap` (corpus encoding, teacher retrieval, LLM
rewriting) as a Prefect task on the flow's task runner, prefect-ray's ``RayTaskRunner`` (``runner.kind=ray``).

The stage itself stays one cached task in the flow's process; only its shards go to the cluster, each visible in
the UI as a task run ``<what>-<i>`` inside the stage's task. Shard functions write their files where the stage's
folder is, so a cluster of several machines needs ``out`` on shared storage (README, "Team setup").

Ray must start in a process before the JVM does. The HotSpot JVM raises SIGSEGV on purpose (safepoint polls,
implicit null checks) and handles it itself; ``ray.init`` installs crash handlers for SIGSEGV (abseil's failure
signal handler in Ray's core worker, and Python's ``faulthandler`` unless already enabled), and installed after the
JVM's they turn the first such signal into a crash: "SIGSEGV received" inside ``batch_search``. Installed before the
JVM starts, they are replaced by the JVM's own and nothing happens; this is the order in a ``disco run`` process
(Ray at flow start, the JVM later, when a stage first searches) and in Ray's workers (Ray at worker start, the JVM
in a shard). So :func:`task_runner` refuses a process whose JVM already runs (an interpreter or a test process that
searched before); docs/scaling.md has the reproduction.
"""

from __future__ import annotations

import sys
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
    if "jnius" in sys.modules:  # importing jnius starts the JVM
        raise DiscoError("runner.kind=ray: the JVM (Pyserini) already runs in this process, and starting Ray here "
                         "would replace its signal handlers (Lucene then dies with a segmentation fault); start "
                         "the Ray run in a fresh process (`disco run --runner ray`)")
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise DiscoError("runner.kind=ray needs prefect-ray and ray: pip install -e '.[ray]'") from None

    env = {"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    if cfg.address:
        return RayTaskRunner(address=cfg.address, init_kwargs={"runtime_env": {"env_vars": env}})
    # address "local": a new cluster even where RAY_ADDRESS is set or `ray start` left one running (with no
    # address, ray.init joins that one, and refuses num_cpus there)
    return RayTaskRunner(init_kwargs={"address": "local", "num_cpus": cfg.workers, "include_dashboard": False,
                                      "runtime_env": {"env_vars": env}})
