"""What the benchmarks share: the repository root, latency percentiles, and what every performance benchmark reports
beside its ratios: the machine, its load, its measured fp32 matrix multiply rate (the attainable arithmetic peak the
encoders are compared with) and peak memory of a block.

The benchmarks are a package run from the repository root: ``python -m benchmarks.<name>`` (``make bench``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def describe() -> dict:
    """CPU model, cores, ISA extensions that matter here, memory, load average, torch threads."""
    info = {"cpu": platform.processor() or "", "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", info["cpu"]).strip()
        flags = fields.get("Flags", "").split()
        info["isa"] = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
        info["l2"] = fields.get("L2 cache", "").strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    import torch

    info["torch_threads"] = torch.get_num_threads()
    info["torch"] = torch.__version__
    return info


def gemm_gflops(n: int = 1536, repeats: int = 5) -> float:
    """The best fp32 GFLOP/s of an n x n x n ``torch.mm`` over a few tries: the attainable arithmetic peak."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """``with PeakRSS() as p: ...`` then ``p.extra_mib``: the peak resident memory above the start, sampled."""

    def __init__(self, every_s: float = 0.005):
        self.every_s = every_s
        self.start = self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = rss_mib()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.every_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())

    @property
    def extra_mib(self) -> float:
        return self.peak - self.start


def process_peak_mib(pid_usage) -> float:
    """Peak RSS (MiB) of finished child processes, from ``resource.getrusage(RUSAGE_CHILDREN)``."""
    return pid_usage.ru_maxrss / 1024


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50 / p95 / mean (ms) and the count; p95 by linear interpolation (numpy's default)."""
    a = np.asarray(ms, dtype=float)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean())}


def best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best
