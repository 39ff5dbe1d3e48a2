"""Orchestration cost: a fully cached `disco run demo` end to end, and Prefect's overhead per task (issue 12, part 5).

On a finished demo run (``--run-dir``; run once first when it has no ``metrics.json``), whole `disco run demo`
processes, start-up and exit included, in a Prefect home of their own (``OUT/prefect-home``), interleaved per round:

- ``temporary``: ``DISCO_PREFECT_SERVER_IDLE=0``, Prefect's own behaviour before this change: a temporary server
  started and stopped by every command;
- ``shared, cold``: the home's shared server (flows/server.py) stopped first, so the command starts it;
- ``shared, warm``: the shared server already running (every command after the first).

Each must end with every stage ``Cached`` and ``metrics.json`` unchanged. Then, in one process against the warm
server: where the time of a warm command goes (imports, whether torch was imported at start and which of torch,
transformers, pyserini, jnius and scipy were by the end, the flow, exit), a plain cached plan without Prefect
(:func:`stages.runner.run_pipeline`) against the same plan as the Prefect flow (its cached tasks), an empty flow,
and an empty task called ``--tasks`` times in a flow: Prefect's overhead per task.

    .venv/bin/python -m benchmarks.orchestration --run-dir runs/demo [--rounds 3] [--out runs/bench-orchestration]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT

MODES = ("temporary", "shared, cold", "shared, warm")


def cli_env(home: Path, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(ROOT), NO_COLOR="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DISCO_PREFECT_SERVER_IDLE="0" if mode == "temporary" else "900")
    return env


def stop_shared(home: Path) -> None:
    from flows.server import RECORD, running

    rec = running(home)
    if rec is None:
        return
    os.kill(rec["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{rec['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    (home / RECORD).unlink(missing_ok=True)


def cached_run(run_dir: Path, home: Path, mode: str, want: str) -> dict:
    cmd = [sys.executable, "-m", "disco.cli", "run", "demo", "--out", str(run_dir)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=cli_env(home, mode), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    shown = p.stdout + p.stderr
    cached = shown.count("Finished in state Cached")
    if p.returncode != 0 or cached < 6 or (run_dir / "metrics.json").read_text() != want:
        raise SystemExit(f"{mode}: not a fully cached run (exit {p.returncode}, {cached} cached tasks)\n{shown}")
    return {"mode": mode, "wall_s": round(wall, 2), "load_avg_1m": load,
            "temporary_server": "Starting temporary server" in shown}


PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
from disco.cli import app
import flows.pipeline, stages.graph
t1 = time.perf_counter()
torch = "torch" in sys.modules
try:
    app(["run", "demo", "--out", sys.argv[1]], standalone_mode=False)
except SystemExit:
    pass
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "pyserini", "jnius", "scipy"})
print("PHASES " + json.dumps({"imports_s": t1 - t0, "command_s": t2 - t1, "torch_imported": torch,
                              "heavy_imported_by_the_end": heavy}))
"""


def phases(run_dir: Path, home: Path) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PHASES, str(run_dir)], cwd=ROOT, env=cli_env(home, "shared, warm"),
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in p.stdout.splitlines() if x.startswith("PHASES ")), None)
    if line is None:
        raise SystemExit(f"phases: {p.stdout}{p.stderr}")
    got = json.loads(line[len("PHASES "):])
    got["process_s"] = wall
    got["start_and_exit_s"] = wall - got["imports_s"] - got["command_s"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in got.items()}


def overhead(run_dir: Path, tasks: int) -> dict:
    """In this process (PREFECT_API_URL set by the caller to the warm server): Prefect's cost per task."""
    from prefect import flow, task

    from flows.pipeline import run as run_flow
    from stages.config import preset
    from stages.runner import run_pipeline

    cfg = preset("demo")

    @task(cache_policy=None, persist_result=False)
    def nothing(i: int) -> int:
        return i

    @flow(name="bench-empty")
    def empty() -> None:
        return None

    @flow(name="bench-tasks")
    def many(n: int) -> None:
        for i in range(n):
            nothing(i)

    def best(fn, rounds: int = 3) -> float:
        out = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return min(out)

    run_pipeline(cfg, run_dir)  # warm the code-version cache and the file system for both
    plain = best(lambda: run_pipeline(cfg, run_dir))
    prefect = best(lambda: run_flow(cfg, str(run_dir)))
    flow_only = best(empty)
    many(2)
    with_tasks = best(lambda: many(tasks))
    steps = 6
    return {"plain_plan_s": round(plain, 3), "prefect_flow_s": round(prefect, 3), "empty_flow_s": round(flow_only, 3),
            "per_cached_stage_task_ms": round((prefect - plain - flow_only) / steps * 1000, 1),
            "per_empty_task_ms": round((with_tasks - flow_only) / tasks * 1000, 1), "tasks": tasks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-orchestration")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    if args.inner:
        print("OVERHEAD " + json.dumps(overhead(run_dir, args.tasks)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    home = (args.out / "prefect-home").resolve()
    if not (run_dir / "metrics.json").exists():
        print(f"{run_dir}: no finished run, running `disco run demo` once (minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "disco.cli", "run", "demo", "--out", str(run_dir)], cwd=ROOT,
                       env=cli_env(home, "temporary"), check=True, capture_output=True)
    want = (run_dir / "metrics.json").read_text()
    try:
        subprocess.run([sys.executable, "-m", "disco.cli", "run", "demo", "--out", str(run_dir)], cwd=ROOT,
                       env=cli_env(home, "temporary"), check=True, capture_output=True)  # untimed: the home's database
        want = (run_dir / "metrics.json").read_text()
        rows = []
        for r in range(args.rounds):
            for mode in MODES:
                if mode == "shared, cold":
                    stop_shared(home)
                rows.append({"round": r, **cached_run(run_dir, home, mode, want)})
                print(json.dumps(rows[-1]), flush=True)
        split = phases(run_dir, home)
        from flows.server import running

        env = {**cli_env(home, "shared, warm"), "PREFECT_API_URL": running(home)["url"]}
        p = subprocess.run([sys.executable, "-m", "benchmarks.orchestration", "--inner", "--run-dir", str(run_dir), "--tasks",
                            str(args.tasks)], cwd=ROOT, env=env, capture_output=True, text=True)
        line = next((x for x in p.stdout.splitlines() if x.startswith("OVERHEAD ")), None)
        if line is None:
            raise SystemExit(f"overhead: {p.stdout}{p.stderr}")
        over = json.loads(line[len("OVERHEAD "):])
    finally:
        stop_shared(home)
    best = {m: min(r["wall_s"] for r in rows if r["mode"] == m) for m in MODES}
    median = {m: sorted(r["wall_s"] for r in rows if r["mode"] == m)[len(rows) // len(MODES) // 2] for m in MODES}
    result = {"rows": rows, "best_s": best, "median_s": median,
              "speedup_warm_vs_temporary_median": round(median["temporary"] / median["shared, warm"], 2),
              "phases_warm": split, "prefect_overhead": over, "cores": os.cpu_count(),
              "load_avg_1m_end": os.getloadavg()[0]}
    (args.out / "orchestration.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
