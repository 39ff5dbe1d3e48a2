"""Micro-batching for the searcher: concurrent requests are encoded in one forward pass on one worker thread.

Every encode + search runs on one dedicated thread (:class:`MicroBatcher`), which takes the requests queued while
it worked as one batch. When the previous batch had more than one request (clients are concurrent), it also waits
up to ``max_wait_ms`` for more before it starts; a lone client never waits (the single-query fast path). A service
tells the batcher how many requests could come at most (``senders``: its open HTTP connections, each with at most
one request in flight), and a batch with a request from every one of them starts at once: at 16 clients on two
workers the wait was otherwise always the full 2 ms, an idle eighth of each worker's cycle.

Results do not depend on the batch a request falls into. A batch's conversations are packed into one pass without
padding (:mod:`models.packed`: attention per conversation, every other step over all the tokens), which gives each
conversation the same vector bit for bit alone or in any batch. Where the packed pass does not apply (an encoder
the lean BERT path does not cover, no int8 screen), :func:`bucketed_batches` groups texts by their token length
rounded up to ``bucket_tokens`` and each group is padded to exactly that length, the length a text alone is padded
to as well, so each text is computed with the same shapes per row whatever its neighbours
(``tests/serving/test_batching.py`` checks the rankings).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field


class BatchConfig(BaseModel):
    """How the searcher batches concurrent requests."""

    model_config = ConfigDict(extra="forbid")

    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="how long a batch waits for more requests when "
                                                                "clients are concurrent (0: never waits)")
    max_batch: int = Field(32, ge=1, le=1024, description="conversations in one forward pass at most")
    bucket_tokens: int = Field(16, ge=1, le=512, description="where a batch cannot be packed without padding: "
                                                             "texts are padded to a multiple of this many tokens "
                                                             "and batched with texts of the same padded length")
    threads: int | None = Field(None, ge=1, le=256, description="torch threads encoding one conversation (None: "
                                                                "torch's default)")
    batch_threads: int | None = Field(None, ge=1, le=256, description="torch threads encoding two or more "
                                                                      "(None: as one)")


@dataclass
class Job:
    """One conversation to answer: its student input text, k, and the future its answer goes to."""

    text: str
    k: int
    future: Future = field(default_factory=Future)
    request: int = 0  # the submit() call that queued it (the conversations of one request come together)


def bucketed_batches(lengths: Sequence[int], bucket_tokens: int, max_batch: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped by length rounded up to ``bucket_tokens``, at most ``max_batch`` per group,
    in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(-(-n // bucket_tokens), []).append(i)
    return [idx[a:a + max_batch] for idx in groups.values() for a in range(0, len(idx), max_batch)]


def pad_group(encoded: dict[str, list[list[int]]], group: Sequence[int], multiple: int, pad_id: int,
              pad_type_id: int = 0, side: str = "right") -> dict[str, "torch.Tensor"] | None:
    """The tensors ``tokenizer.pad`` gives for the rows ``group`` of a tokenizer's unpadded output (``input_ids``,
    ``attention_mask`` and optional ``token_type_ids``), padded to the longest rounded up to ``multiple``, without
    its per-call Python (a quarter of a query's CPU at 16 clients); ``None`` for any other key (the caller then
    uses ``tokenizer.pad``). ``tests/serving/test_batching.py`` checks it against ``tokenizer.pad``."""
    import torch

    if set(encoded) - {"input_ids", "attention_mask", "token_type_ids"}:
        return None
    rows = [encoded["input_ids"][i] for i in group]
    width = -(-max(map(len, rows)) // multiple) * multiple
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": pad_type_id}

    def padded(key: str) -> list[list[int]]:
        out = []
        for i in group:
            row = encoded[key][i]
            pad = [fill[key]] * (width - len(row))
            out.append(row + pad if side == "right" else pad + row)
        return out

    return {key: torch.tensor(padded(key), dtype=torch.long) for key in encoded}


class MicroBatcher:
    """One worker thread that runs ``work(jobs)`` on batches of queued jobs; ``work`` answers each job's future.

    ``sizes`` counts the batches run by size (for tests and benchmarks). ``senders`` (set by the service): how many
    requests could be queued together at most right now, or ``None`` when unknown (then a batch waits its
    ``max_wait_ms``).
    """

    def __init__(self, work: Callable[[list[Job]], None], config: BatchConfig | None = None,
                 name: str = "disco-search"):
        self.config = config or BatchConfig()
        self.sizes: dict[int, int] = {}
        self._work = work
        self._queue: queue.SimpleQueue[Job | Callable[[], None] | None] = queue.SimpleQueue()
        self._last = 1
        self.senders: Callable[[], int] | None = None
        self._requests = itertools.count(1)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, jobs: Sequence[Job]) -> list[Future]:
        """Queue the conversations of one request."""
        request = next(self._requests)
        for job in jobs:
            job.request = request
            self._queue.put(job)
        return [j.future for j in jobs]

    def call(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the worker thread between batches; its result."""
        done: Future = Future()
        self._queue.put(lambda: done.set_result(fn()))
        return done.result()

    def close(self, last: Callable[[], None] | None = None) -> None:
        """Finish the queued jobs, run ``last`` on the worker thread, and stop it."""
        if self._thread.is_alive():
            if last is not None:
                self._queue.put(last)
            self._queue.put(None)
            self._thread.join()

    def _take(self, block_until: float | None) -> Job | Callable[[], None] | None | bool:
        """The next queued item; False when none came (at once, or by ``block_until``)."""
        try:
            if block_until is None:
                return self._queue.get_nowait()
            return self._queue.get(timeout=max(0.0, block_until - time.perf_counter()))
        except queue.Empty:
            return False

    def _everyone(self, requests: set[int]) -> bool:
        """Whether ``requests`` are as many as could come (no sense waiting for more)."""
        senders = self.senders
        return senders is not None and len(requests) >= senders()

    def _loop(self) -> None:
        pending: list = []
        while True:
            item = pending.pop(0) if pending else self._queue.get()
            if item is None:
                return
            if not isinstance(item, Job):
                item()  # a call between batches
                continue
            jobs, requests = [item], {item.request}
            wait = self.config.max_wait_ms / 1000 if self._last > 1 else 0.0
            until = time.perf_counter() + wait
            while len(jobs) < self.config.max_batch:
                nxt = self._take(until if wait and not self._everyone(requests) else None)
                if nxt is False:
                    break
                if not isinstance(nxt, Job):  # a call or the stop: after this batch
                    pending.append(nxt)
                    break
                jobs.append(nxt)
                requests.add(nxt.request)
            self._last = len(jobs)
            self.sizes[len(jobs)] = self.sizes.get(len(jobs), 0) + 1
            try:
                self._work(jobs)
            except BaseException as e:  # noqa: BLE001 - every waiting request gets the error
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
