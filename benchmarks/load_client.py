"""The load generator of benchmarks/service.py: N concurrent keep-alive HTTP/1.1 clients on one asyncio loop.

Each client is one connection sending ``POST /search`` (bodies encoded once, ahead) and reading the answer (status
200 and a non-empty ``results``, else an error). One thread for all clients: the first version ran one thread per
client with httpx, and at 16 clients on 2 cores the load generator itself used 16.6 ms of CPU per request (the GIL
passed between 16 threads), more than the server, so it measured itself. Here it costs well under a millisecond a
request (``client_cpu_ms`` in the results).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from urllib.parse import urlsplit

import numpy as np


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` and its children (a service's worker processes); 0 without one."""
    import psutil

    if pid is None:
        return 0.0
    total = 0.0
    try:
        p = psutil.Process(pid)
        for q in [p, *p.children(recursive=True)]:
            t = q.cpu_times()
            total += t.user + t.system
    except psutil.NoSuchProcess:
        pass
    return total


async def _client(host: str, port: int, bodies: list[bytes], counter, deadline: float, lat: list, errors: Counter,
                  on_request) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            i = next(counter, None)
            if i is None:
                return
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                writer.write(b"POST /search HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                answer = await reader.readexactly(length)
                if status != 200 or not json.loads(answer)["results"]:
                    errors[str(status)] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as e:
                errors[type(e).__name__] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            lat.append(1000 * (time.perf_counter() - t0))
            on_request()
    finally:
        writer.close()


def load_level(url: str, convs: list, clients: int, requests: int, max_s: float, on_request,
               server_pid: int | None = None) -> dict:
    """``requests`` searches (k=10) of ``convs`` in turn from ``clients`` connections, or until ``max_s``:
    latencies, errors, throughput, and the CPU milliseconds per request of the server (with ``server_pid``, its
    worker processes included) and of this load generator."""
    parts = urlsplit(url)
    bodies = [json.dumps({"conversation": c, "k": 10}).encode() for c in convs]
    lats: list[list[float]] = [[] for _ in range(clients)]  # each client's own: how evenly they are served
    errors: Counter = Counter()
    counter = iter(range(requests))

    async def run() -> None:
        deadline = time.monotonic() + max_s
        await asyncio.gather(*(_client(parts.hostname, parts.port, bodies, counter, deadline, lats[i], errors,
                                       on_request) for i in range(clients)))

    t0, cpu0, own0 = time.perf_counter(), cpu_s(server_pid), sum(os.times()[:2])
    asyncio.run(run())
    wall = time.perf_counter() - t0
    lat = [x for own in lats for x in own]
    a = np.asarray(lat)
    n = max(1, len(lat))
    means = [float(np.mean(own)) for own in lats if own]
    return {"clients": clients, "requests": len(lat), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "req_per_s": len(lat) / wall,
            "client_mean_ms": [min(means), max(means)] if means else [0.0, 0.0],
            "server_cpu_ms": 1000 * (cpu_s(server_pid) - cpu0) / n,
            "client_cpu_ms": 1000 * (sum(os.times()[:2]) - own0) / n}
