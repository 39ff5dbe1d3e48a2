"""The HTTP side of a search (issue 28): the event loop's CPU per ``POST /search`` through the service's ASGI app
with ``SearchFastPath`` (the default) and without it (FastAPI's routing, dependency solving, ``json.loads`` then
validation and its response class), in the same run.

The app of ``disco serve`` (``create_app`` + the access log) over a finished run's searcher is called in this
process, without a socket, by 8 concurrent callers on one asyncio loop (as a worker's event loop serves 8 of the
16 clients of benchmarks/service.py): each sends its conversation's JSON body and reads the whole answer. The
loop thread's own CPU time (``time.thread_time``, the encoding runs on the searcher's worker thread and is not
counted) is divided by the requests, best of ``--repeats`` rounds, the two apps interleaved so the machine's load
hits both alike. The answers must be the same apart from ``timing_ms`` (the benchmark stops otherwise). The socket
and uvicorn's HTTP parsing are outside this measurement and the same for both.

    .venv/bin/python -m benchmarks.http_path --run-dir runs/demo --out runs/bench-http-path
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path


def app_of(searcher, fast: bool):
    """``disco serve``'s ASGI app over ``searcher`` (access log included), with or without the fast path."""
    from disco.serving.app import SearchFastPath, create_app
    from disco.serving.service import AccessLog

    app = create_app(searcher)
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not SearchFastPath]
    return AccessLog(app)


async def call(app, body: bytes) -> tuple[int, bytes]:
    """One ``POST /search`` through ``app``: status and body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/search", "raw_path": b"/search", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = [{"type": "http.request", "body": body, "more_body": False}]
    status, out = [0], []

    async def receive():
        return sent.pop() if sent else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return status[0], b"".join(out)


def round_cpu_ms(app, bodies: list[bytes], callers: int) -> tuple[float, list]:
    """The loop thread's CPU milliseconds per request over all ``bodies`` (``callers`` at a time), and the answers."""
    async def run() -> list:
        queue = list(enumerate(bodies))
        answers: list = [None] * len(bodies)

        async def caller() -> None:
            while queue:
                i, body = queue.pop()
                answers[i] = await call(app, body)
        await asyncio.gather(*(caller() for _ in range(callers)))
        return answers

    t0 = time.thread_time()
    answers = asyncio.run(run())
    return 1000 * (time.thread_time() - t0) / len(bodies), answers


def comparable(answer: tuple[int, bytes]) -> tuple[int, dict]:
    status, body = answer
    doc = json.loads(body)
    doc.pop("timing_ms", None)
    return status, doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-http-path"))
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import polars as pl
    import torch

    from benchmarks.common import describe
    from core.io import write_json, write_text
    from core.run_record import RunRecord
    from disco.serving.search import Searcher

    torch.set_num_threads(1)
    logging.getLogger("disco.serve.access").disabled = True  # the access line is formatted, not printed
    turns = pl.read_parquet(RunRecord.read(args.run_dir).output("ingest", "turns")).to_dicts()
    bodies = [json.dumps({"conversation": [{"speaker": h["role"], "text": h["text"]} for h in t["history"] or []]
                          + [{"speaker": "user", "text": t["question"]}], "k": 10}).encode() for t in turns]
    searcher = Searcher.open(args.run_dir)
    try:
        apps = {"fastapi": app_of(searcher, False), "fast path": app_of(searcher, True)}
        answers = {name: round_cpu_ms(app, bodies, args.callers)[1] for name, app in apps.items()}  # warm-up
        if [comparable(a) for a in answers["fastapi"]] != [comparable(a) for a in answers["fast path"]] \
                or any(s != 200 for s, _ in answers["fast path"]):
            raise SystemExit("the two apps answer differently")
        best = {name: float("inf") for name in apps}
        for _ in range(args.repeats):
            for name, app in apps.items():
                best[name] = min(best[name], round_cpu_ms(app, bodies, args.callers)[0])
    finally:
        searcher.close()
    ratio = best["fastapi"] / best["fast path"]
    md = (f"# The HTTP side of a search: event-loop CPU per POST /search ({len(bodies)} conversations, "
          f"{args.callers} concurrent callers, best of {args.repeats})\n\n"
          "| app | loop CPU ms per request |\n|---|---|\n"
          + "".join(f"| {name} | {ms:.3f} |\n" for name, ms in best.items())
          + f"\nfast path: {ratio:.2f}x less loop CPU per request; answers identical apart from timing_ms\n")
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "http_path.md", md)
    write_json(args.out / "http_path.json", {"loop_cpu_ms": best, "ratio": ratio, "machine": describe(),
                                             "conversations": len(bodies), "callers": args.callers})


if __name__ == "__main__":
    main()
