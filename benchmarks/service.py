"""Load test and OpenAPI fuzz of ``disco serve`` on loopback, bounded in requests and time, idle and beside busy
neighbours, for each server configuration in the same run (micro-batched and unbatched by default).

For each ``--configs`` entry, starts a real ``disco serve RUN_DIR`` with its flags (uvicorn, 127.0.0.1, a free
port), then

- load, idle: at 1, 4 and 16 concurrent clients (keep-alive connections on one asyncio loop, load_client.py) sends
  ``POST /search``
  for the run's test conversations in turn, until the level's share of ``--requests`` is done or
  ``--max-seconds`` passes. Reported per level: requests, errors (non-200 or failed), p50 / p95 / p99 ms and
  requests/s; and the server's resident memory (VmRSS of its process) sampled every 500 requests;
- load, busy: the same beside neighbours the benchmark starts and stops itself (benchmarks/neighbours.py: by
  default two processes each running a 2-thread torch matmul loop), ``--busy-requests`` at 1 and at 16 clients;
- fuzz (first configuration only): Schemathesis generates ``--examples`` requests per operation from the OpenAPI
  schema (valid and invalid bodies) and counts the answers by status class: a 5xx is a failure.

Ratios in the same run: each configuration's 16-client requests/s over its 1-client requests/s, and each
configuration's requests/s over the first one's. ``NAME@DIR`` runs configuration NAME with the code of another
checkout (``git worktree add /tmp/base HEAD~1``): the earlier code as the baseline of the same run.

    .venv/bin/python -m benchmarks.service --run-dir runs/demo --out runs/bench-service
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.load_client import load_level

LEVELS = (1, 4, 16)
SHARES = {1: 0.15, 4: 0.35, 16: 0.5}  # of --requests
CONFIGS = {"batched": [], "unbatched": ["--max-batch", "1", "--max-wait-ms", "0"],
           "threads2": ["--threads", "2"], "workers2": ["--workers", "2"],
           "workers2-bucket32": ["--workers", "2", "--bucket-tokens", "32"],
           "workers2-pinned": ["--workers", "2", "--pin-cpus"], "batch-threads2": ["--batch-threads", "2"],
           "unbatched-threads2": ["--max-batch", "1", "--max-wait-ms", "0", "--threads", "2"]}


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the worker processes of ``--workers N``)."""
    import psutil

    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def start_server(run_dir: Path, log: Path, flags: list[str] = (), tree: Path | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """``disco serve`` with ``flags`` on a free port; with ``tree``, the code of that checkout (first on the path)."""
    import os

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    disco = Path(sys.executable).with_name("disco")
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    # and run in the tree: `python -m disco.serving.workers` (the --workers N processes) puts its working directory
    # ahead of PYTHONPATH, so from this checkout the workers would import this checkout's code
    proc = subprocess.Popen([str(disco), "serve", str(Path(run_dir).resolve()), "--port", str(port), *flags],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True, env=env,
                            cwd=str(tree) if tree else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"disco serve did not start; see {log}")


def stop(proc: subprocess.Popen) -> None:
    from core.proc import stop_group

    stop_group(proc, 20)


def fuzz(url: str, examples: int) -> dict:
    """Schemathesis over every operation of the schema; answers counted by status class."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    statuses: Counter = Counter()
    server_errors: list = []
    operations = [(op.ok(), mode) for op in schema.get_all_operations() for mode in schemathesis.GenerationMode]
    for operation, mode in operations:

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def check(case):
            r = case.call(timeout=60)
            statuses[f"{operation.label} {mode.value} {r.status_code // 100}xx"] += 1
            if r.status_code >= 500:
                server_errors.append({"operation": operation.label, "status": r.status_code, "body": r.text[:300]})

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send, e.g. GET /health in negative mode
            assert mode == schemathesis.GenerationMode.NEGATIVE
    return {"examples_per_operation": examples, "statuses": dict(sorted(statuses.items())),
            "server_errors": server_errors}


def markdown(results: dict, fz: dict | None, load: dict) -> str:
    lines = [f"load average before: {load['before']}; after: {load['after']}; neighbours: {load['neighbours']}",
             "", "| server | phase | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s | CPU ms/req "
                 "server / client | mean ms of the fastest / slowest client |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines += [f"| {name} | {phase} | {x['clients']} | {x['requests']} | {x['errors']} | {x['p50']:.1f} | "
                  f"{x['p95']:.1f} | {x['p99']:.1f} | {x['req_per_s']:.1f} | {x['server_cpu_ms']:.2f} / "
                  f"{x['client_cpu_ms']:.2f} | {x['client_mean_ms'][0]:.1f} / {x['client_mean_ms'][1]:.1f} |"
                  for phase in ("idle", "busy") for x in r[phase]]
    first = next(iter(results))
    for name, r in results.items():
        idle = {x["clients"]: x["req_per_s"] for x in r["idle"]}
        base = {x["clients"]: x["req_per_s"] for x in results[first]["idle"]}
        lines.append(f"\n{name}: 16 clients / 1 client = {idle[16] / idle[1]:.2f}x requests/s; "
                     f"at 16 clients {idle[16] / base[16]:.2f}x {first}'s; RSS {r['rss'][0][1]:.0f} -> "
                     f"{r['rss'][-1][1]:.0f} MiB (max {max(m for _, m in r['rss']):.0f})")
    if fz is not None:
        lines.append(f"\nSchemathesis, {fz['examples_per_operation']} examples per operation: "
                     + ", ".join(f"{k}: {v}" for k, v in fz["statuses"].items())
                     + f"; 5xx answers: {len(fz['server_errors'])}")
    return "\n".join(lines) + "\n"


def measure(run_dir: Path, out: Path, name: str, convs: list, args, fuzz_it: bool) -> tuple[dict, dict | None]:
    """One server configuration: idle levels, busy levels beside the neighbours, and the fuzz if asked."""
    from benchmarks.neighbours import Neighbours

    config, _, tree = name.partition("@")
    proc, url = start_server(run_dir, out / f"serve-{name.replace('/', '_')}.log", CONFIGS[config],
                             Path(tree) if tree else None)
    rss: list[tuple[int, float]] = []
    done = [0]

    def on_request() -> None:
        done[0] += 1
        if done[0] % 500 == 0:
            rss.append((done[0], rss_mib(proc.pid)))

    try:
        load_level(url, convs, 4, 200, 120, lambda: None)  # warm-up, not counted
        rss.append((0, rss_mib(proc.pid)))
        idle, busy = [], []
        for n in LEVELS:
            idle.append(load_level(url, convs, n, int(args.requests * SHARES[n]), args.max_seconds, on_request,
                                   proc.pid))
            print(name, "idle", idle[-1], flush=True)
        if args.busy_requests:
            with Neighbours(args.neighbours, 2, 2):
                for n in (1, 16):
                    busy.append(load_level(url, convs, n, args.busy_requests, args.max_seconds, on_request,
                                           proc.pid))
                    print(name, "busy", busy[-1], flush=True)
        rss.append((done[0], rss_mib(proc.pid)))
        fz = fuzz(url, args.examples) if fuzz_it and args.examples else None
    finally:
        stop(proc)
    return {"flags": CONFIGS[config], "tree": tree or None, "idle": idle, "busy": busy, "rss": rss}, fz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-service"))
    parser.add_argument("--configs", nargs="+", default=["batched", "unbatched"],
                        help=f"of {', '.join(CONFIGS)}; NAME@DIR runs NAME with the code of the checkout DIR (e.g. a "
                             "git worktree of an earlier commit), for a baseline in the same run")
    parser.add_argument("--requests", type=int, default=10_000, help="idle, in all, over the three levels")
    parser.add_argument("--busy-requests", type=int, default=400, help="per busy level (0: no busy phase)")
    parser.add_argument("--neighbours", default="torch", choices=["torch", "python"])
    parser.add_argument("--max-seconds", type=float, default=600, help="per level")
    parser.add_argument("--examples", type=int, default=200, help="Schemathesis examples per operation")
    args = parser.parse_args()
    for name in args.configs:
        config, at, tree = name.partition("@")
        if config not in CONFIGS:
            parser.error(f"--configs {name}: {config!r} is not one of {', '.join(CONFIGS)}")
        if at and not Path(tree).is_dir():
            parser.error(f"--configs {name}: {tree!r} is not a folder (a checkout of the code to run, e.g. a worktree)")

    import os

    import polars as pl

    from core.io import write_json, write_text
    from core.run_record import RunRecord
    from benchmarks.neighbours import Neighbours

    turns = pl.read_parquet(RunRecord.read(args.run_dir).output("ingest", "turns")).to_dicts()
    convs = [[{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
             + [{"speaker": "user", "text": t["question"]}] for t in turns]
    args.out.mkdir(parents=True, exist_ok=True)
    load = {"before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "neighbours": Neighbours(args.neighbours, 2, 2).describe()}
    results, fz = {}, None
    for i, name in enumerate(args.configs):
        results[name], got = measure(args.run_dir.resolve(), args.out, name, convs, args, i == 0)
        fz = fz or got
    load["after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    md = markdown(results, fz, load)
    print(md)
    write_text(args.out / "service.md", md)
    write_json(args.out / "service.json", {"results": results, "fuzz": fz, "load": load})


if __name__ == "__main__":
    main()
