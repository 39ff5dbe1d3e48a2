"""Load test and OpenAPI fuzz of ``disco serve`` on loopback, bounded in requests and time.

Starts a real ``disco serve RUN_DIR`` (uvicorn, 127.0.0.1, a free port), then

- load: at 1, 4 and 16 concurrent clients (threads, one keep-alive HTTP client each) sends ``POST /search`` for
  the run's test conversations in turn, until the level's share of ``--requests`` is done or ``--max-seconds``
  passes. Reported per level: requests, errors (non-200 or failed), p50 / p95 / p99 ms and requests/s; and the
  server's resident memory (VmRSS of its process) sampled every 500 requests, from after the warm-up to the end;
- fuzz: Schemathesis generates ``--examples`` requests per operation from the OpenAPI schema (valid and invalid
  bodies) and counts the answers by status class: a 5xx is a failure.

    .venv/bin/python benchmarks/service.py --run-dir runs/demo --out runs/bench-service
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

LEVELS = (1, 4, 16)
SHARES = {1: 0.15, 4: 0.35, 16: 0.5}  # of --requests


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    disco = Path(sys.executable).with_name("disco")
    proc = subprocess.Popen([str(disco), "serve", str(run_dir), "--port", str(port)], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
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


def load_level(url: str, convs: list, clients: int, requests: int, max_s: float, on_request) -> dict:
    """``requests`` searches from ``clients`` threads (or until ``max_s``): latencies, errors, throughput."""
    import httpx

    lat: list[float] = []
    errors = Counter()
    counter = iter(range(requests))
    lock = threading.Lock()
    deadline = time.monotonic() + max_s

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.post(url + "/search", json={"conversation": convs[i % len(convs)], "k": 10})
                    ok = r.status_code == 200 and r.json()["results"]
                    if not ok:
                        errors[str(r.status_code)] += 1
                except Exception as e:  # noqa: BLE001 - counted as an error
                    errors[type(e).__name__] += 1
                with lock:
                    lat.append(1000 * (time.perf_counter() - t0))
                    on_request()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {"clients": clients, "requests": len(lat), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "req_per_s": len(lat) / wall}


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


def markdown(levels: list[dict], rss: list[tuple[int, float]], fz: dict | None) -> str:
    lines = ["| clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50']:.1f} | {r['p95']:.1f} | "
              f"{r['p99']:.1f} | {r['req_per_s']:.1f} |" for r in levels]
    if rss:
        lines.append(f"\nserver RSS after {rss[0][0]} requests: {rss[0][1]:.0f} MiB; after {rss[-1][0]}: "
                     f"{rss[-1][1]:.0f} MiB (max {max(m for _, m in rss):.0f}, {len(rss)} samples)")
    if fz is not None:
        lines.append(f"\nSchemathesis, {fz['examples_per_operation']} examples per operation: "
                     + ", ".join(f"{k}: {v}" for k, v in fz["statuses"].items())
                     + f"; 5xx answers: {len(fz['server_errors'])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-service"))
    parser.add_argument("--requests", type=int, default=10_000, help="in all, over the three levels")
    parser.add_argument("--max-seconds", type=float, default=600, help="per level")
    parser.add_argument("--examples", type=int, default=200, help="Schemathesis examples per operation")
    args = parser.parse_args()

    import polars as pl

    from core.io import write_json, write_text

    from core.run_record import RunRecord

    turns = pl.read_parquet(RunRecord.read(args.run_dir).output("ingest", "turns")).to_dicts()
    convs = [[{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
             + [{"speaker": "user", "text": t["question"]}] for t in turns]
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(args.run_dir.resolve(), args.out / "serve.log")
    rss: list[tuple[int, float]] = []
    done = [0]

    def on_request() -> None:
        done[0] += 1
        if done[0] % 500 == 0:
            rss.append((done[0], rss_mib(proc.pid)))

    try:
        load_level(url, convs, 4, 200, 120, lambda: None)  # warm-up, not counted
        rss.append((0, rss_mib(proc.pid)))
        levels = []
        for n in LEVELS:
            levels.append(load_level(url, convs, n, int(args.requests * SHARES[n]), args.max_seconds, on_request))
            print(levels[-1], f"rss {rss[-1][1]:.0f} MiB", flush=True)
        fz = fuzz(url, args.examples) if args.examples else None
    finally:
        stop(proc)
    md = markdown(levels, rss, fz)
    print(md)
    write_text(args.out / "service.md", md)
    write_json(args.out / "service.json", {"levels": levels, "rss_mib": rss, "fuzz": fz})


if __name__ == "__main__":
    main()
