"""Busy neighbours for the serving benchmarks: processes that keep the machine's cores busy as other jobs do.

``torch`` neighbours each run a loop of 512 x 512 float32 matrix products with 2 intra-op threads (a training job
or another model server: OpenMP threads that spin at every barrier); ``python`` neighbours run a pure-Python
loop (one core each). Each starts in its own session, as another job would (with autogroup scheduling, the kernel
shares the CPU between sessions first), and :meth:`Neighbours.stop` ends them and their threads.

    with Neighbours(kind="torch", count=2, threads=2):
        ...  # measure
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

TORCH_LOOP = """
import torch, sys
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(512, 512)
print("busy", flush=True)
while True:
    a = torch.tanh(a @ a)
"""

PYTHON_LOOP = """
print("busy", flush=True)
x = 0
while True:
    x = (x + 1) % 1000003
"""


class Neighbours:
    """``count`` busy processes of ``kind`` (``torch``: ``threads`` intra-op threads each; ``python``: one core)."""

    def __init__(self, kind: str = "torch", count: int = 2, threads: int = 2):
        if kind not in ("torch", "python"):
            raise ValueError(f"kind must be torch or python, not {kind!r}")
        self.kind, self.count, self.threads = kind, count, threads
        self.procs: list[subprocess.Popen] = []

    def describe(self) -> str:
        what = f"a {self.threads}-thread torch matmul loop" if self.kind == "torch" else "a pure-Python loop"
        return f"{self.count} processes each running {what}"

    def start(self) -> "Neighbours":
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        code = TORCH_LOOP if self.kind == "torch" else PYTHON_LOOP
        for _ in range(self.count):
            self.procs.append(subprocess.Popen([sys.executable, "-c", code, str(self.threads)], env=env,
                                               stdout=subprocess.PIPE, start_new_session=True))
        for p in self.procs:  # each one is busy (torch imported) before any measurement
            if p.stdout.readline().strip() != b"busy":
                self.stop()
                raise RuntimeError("a neighbour did not start")
        time.sleep(1.0)
        return self

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
            p.stdout.close()
        self.procs = []

    def __enter__(self) -> "Neighbours":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
