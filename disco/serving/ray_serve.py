"""``disco serve RUN_DIR --ray``: the same HTTP app (API, page, limits) as replicas of a Ray Serve deployment.

Each replica (:class:`DiscoSearch`) loads its own :class:`~disco.serving.search.Searcher` (micro-batched as in one
process) and answers with :func:`~disco.serving.app.create_app`'s FastAPI app plus the access log; Ray Serve's
proxy on ``host:port`` spreads the requests over the replicas and routes none to a replica before it is loaded.
Without ``address`` a local Ray cluster starts in this process and stops with it (every raylet, worker and Serve
actor); with ``address`` the app is deployed on that cluster (the run folder must be readable at the same path on
its nodes) and, on stop, only this app is deleted. SIGTERM or Ctrl-C stop accepting, let the replicas finish
their requests in flight (Serve's graceful shutdown) and end with "stopped".
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ray import serve

from core.errors import DiscoError
from disco.serving.batching import BatchConfig
from disco.serving.config import RayConfig

APP = "disco"


@serve.deployment(name="DiscoSearch", max_ongoing_requests=64, graceful_shutdown_timeout_s=30,
                  health_check_period_s=5, logging_config={"enable_access_log": False, "log_level": "WARNING"})
@serve.ingress()
class DiscoSearch:
    """One replica: the run's searcher and the HTTP app over it."""

    def __init__(self, run_dir: str, backend: str, batching: dict):
        from disco.serving.search import Searcher
        from disco.serving.service import log_access_to_stderr

        log_access_to_stderr()
        self.searcher = Searcher.open(run_dir, backend=backend, batching=BatchConfig(**batching))
        gc.collect()
        gc.freeze()  # the loaded model out of the cyclic collector, as one process does (service.serve)

    def __serve_build_asgi_app__(self):
        from disco.serving.app import create_app
        from disco.serving.service import AccessLog

        app = create_app(self.searcher)
        app.add_middleware(AccessLog)
        return app

    def __del__(self):
        if getattr(self, "searcher", None) is not None:
            self.searcher.close()


def run(run_dir: Path, host: str, port: int, backend: str, batching: BatchConfig, cfg: RayConfig,
        stop: threading.Event | None = None) -> None:
    """Deploy, print where it answers, and wait until ``stop`` is set (or SIGTERM / Ctrl-C raise); then delete
    the app and, for a local cluster, stop Serve and the cluster."""
    import ray

    local = cfg.address is None
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    threads = str(max(batching.threads or 1, batching.batch_threads or 1))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    try:
        if local:
            print(f"starting a local Ray cluster for {cfg.replicas} replica(s) ...", file=sys.stderr, flush=True)
            ray.init(num_cpus=max(os.cpu_count() or 1, int(cfg.replicas * cfg.replica_cpus + 0.999)),
                     object_store_memory=cfg.object_store_mib * 2**20, include_dashboard=False,
                     runtime_env={"env_vars": env}, logging_level="warning", configure_logging=True)
        else:
            print(f"connecting to the Ray cluster at {cfg.address} ...", file=sys.stderr, flush=True)
            try:
                ray.init(address=cfg.address, runtime_env={"env_vars": env}, logging_level="warning")
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise DiscoError(f"--address {cfg.address}: cannot connect to a Ray cluster there "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        for sig, handler in handlers.items():  # Ray's crash handler took SIGTERM: it would end the process at once
            signal.signal(sig, handler)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        app = DiscoSearch.options(num_replicas=cfg.replicas, ray_actor_options={"num_cpus": cfg.replica_cpus})
        serve.run(app.bind(str(Path(run_dir).resolve()), backend, batching.model_dump()),
                  name=APP, route_prefix="/", blocking=False)
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        print(f"disco serve: {url}/ (the search page), {url}/docs (the API); {cfg.replicas} Ray Serve "
              "replica(s); SIGTERM or Ctrl-C stops it", file=sys.stderr, flush=True)
        stop = stop or threading.Event()
        while not stop.wait(1.0):  # SIGTERM / Ctrl-C raise here (disco/shutdown.py)
            pass
    finally:
        print("stopping: the replicas finish the requests in flight", file=sys.stderr, flush=True)
        if ray.is_initialized():
            try:
                serve.delete(APP)  # waits for the replicas to finish their requests
            finally:
                ray.shutdown()  # a local cluster stops with it (Serve's controller and proxy too)
