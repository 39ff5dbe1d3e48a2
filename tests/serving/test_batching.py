"""Micro-batching: concurrent requests are encoded together, and every answer is the one a request alone gets, bit
for bit (rankings, scores, query terms), on the real trained run."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from disco.serving.batching import BatchConfig, Job, MicroBatcher, bucketed_batches, pad_group


def test_texts_are_grouped_by_padded_length():
    assert bucketed_batches([3, 17, 16, 30, 1, 33], 16, 32) == [[0, 2, 4], [1, 3], [5]]
    assert bucketed_batches([5] * 5, 16, 2) == [[0, 1], [2, 3], [4]]
    assert bucketed_batches([], 16, 4) == []


@pytest.mark.parametrize("side", ["right", "left"])
def test_groups_are_padded_as_the_tokenizer_pads_them(side):
    import random

    from models.splade import SpladeEncoder

    tok = SpladeEncoder("splade-tiny").tokenizer
    tok.padding_side = side
    rng = random.Random(0)
    words = "what is a mortgage rate and how do banks set it for the first house".split()
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 40))) for _ in range(12)]
    enc = tok(texts, truncation=True, max_length=32)
    for group, multiple in (([0], 16), ([3, 1, 7], 16), (list(range(12)), 8), ([5, 2], 1)):
        want = tok.pad({k: [enc[k][i] for i in group] for k in enc.keys()}, pad_to_multiple_of=multiple,
                       return_tensors="pt")
        got = pad_group(dict(enc), group, multiple, tok.pad_token_id, tok.pad_token_type_id, side)
        assert set(got) == set(want.keys())
        for key in got:
            assert torch.equal(got[key], want[key]), key
    assert pad_group({**enc, "special_tokens_mask": enc["input_ids"]}, [0], 16, 0) is None


def _gated(answer=lambda text: text):
    """(work, seen, gate): a batch function that holds until ``gate`` is set, records each batch's texts in ``seen``
    and answers every job with ``answer(text)``."""
    seen: list[list[str]] = []
    gate = threading.Event()

    def work(jobs: list[Job]) -> None:
        gate.wait(10)
        seen.append([j.text for j in jobs])
        for j in jobs:
            j.future.set_result(answer(j.text))

    return work, seen, gate


def test_a_lone_client_never_waits_and_queued_requests_go_together():
    work, seen, gate = _gated(str.upper)
    b = MicroBatcher(work, BatchConfig(max_wait_ms=500, max_batch=3))
    try:
        gate.set()
        t0 = time.perf_counter()
        assert b.submit([Job("a", 1)])[0].result(10) == "A"
        assert time.perf_counter() - t0 < 0.4  # alone: no 500 ms wait
        gate.clear()
        first = b.submit([Job("x", 1)])  # holds the worker until the gate opens
        time.sleep(0.05)
        rest = b.submit([Job(c, 1) for c in "bcdef"])  # queued meanwhile
        gate.set()
        assert [f.result(10) for f in first + rest] == list("XBCDEF")
        assert seen[1:] == [["x"], ["b", "c", "d"], ["e", "f"]]  # at most max_batch per batch
        assert b.call(lambda: threading.current_thread().name) == "disco-search"
    finally:
        b.close()


def test_a_batch_with_a_request_from_every_sender_starts_at_once():
    """``senders`` (a service's open connections): a batch stops waiting once it has a request from each of them;
    the conversations of one request count once; with more senders than requests it waits its ``max_wait_ms``."""
    work, seen, gate = _gated()
    b = MicroBatcher(work, BatchConfig(max_wait_ms=900, max_batch=32))
    try:
        b.senders = lambda: 2
        first = b.submit([Job("x", 1)])  # holds the worker at the gate
        time.sleep(0.05)
        rest = b.submit([Job("y", 1)]) + b.submit([Job("z", 1)])  # queued meanwhile: the next batch, of 2
        gate.set()
        assert [f.result(10) for f in first + rest] == ["x", "y", "z"]
        t0 = time.perf_counter()
        one = b.submit([Job("a", 1), Job("b", 1)])  # one request of two conversations: one sender of two
        time.sleep(0.2)
        two = b.submit([Job("c", 1)])
        assert [f.result(10) for f in one + two] == ["a", "b", "c"]
        assert time.perf_counter() - t0 < 0.7  # started when the second sender's request came, not at 0.9 s
        b.senders = lambda: 3
        t0 = time.perf_counter()
        assert [f.result(10) for f in b.submit([Job("d", 1)]) + b.submit([Job("e", 1)])] == ["d", "e"]
        assert time.perf_counter() - t0 >= 0.85  # a third sender could still come: the batch waited
        assert seen == [["x"], ["y", "z"], ["a", "b", "c"], ["d", "e"]]
    finally:
        b.close()


def test_an_error_reaches_every_request_of_its_batch():
    def work(jobs: list[Job]) -> None:
        raise RuntimeError("broken model")

    b = MicroBatcher(work)
    try:
        for f in b.submit([Job("a", 1), Job("b", 1)]):
            with pytest.raises(RuntimeError, match="broken model"):
                f.result(10)
    finally:
        b.close()


@pytest.fixture(scope="module")
def threaded_searcher(trained_run):
    """One query on 1 torch thread, batches on 2 (`disco serve --threads 1 --batch-threads 2`)."""
    from disco.serving.search import Searcher

    s = Searcher.open(trained_run, batching=BatchConfig(threads=1, batch_threads=2))
    yield s
    s.close()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["default", "threads 1, batches 2"])
def test_concurrent_requests_are_batched_and_answered_as_one_at_a_time(searcher, threaded_searcher, test_turns,
                                                                         which):
    searcher = searcher if which == "default" else threaded_searcher
    convs = [t["conversation"] for t in test_turns]
    alone = [searcher.search(c, k=20, explain=True) for c in convs]  # sequential: batches of one
    before = dict(searcher.batcher.sizes)
    got: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def client(w: int) -> None:
        try:
            start.wait(30)
            for i in range(w, len(convs) * 2, 16):
                got[(w, i)] = searcher.search(convs[i % len(convs)], k=20 if i % 3 else 5, explain=True)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(got) == 2 * len(convs)
    batched = {n: c - before.get(n, 0) for n, c in searcher.batcher.sizes.items() if c > before.get(n, 0)}
    assert max(batched) > 1, batched  # requests were encoded together
    for (w, i), r in got.items():
        one = alone[i % len(convs)]
        k = 20 if i % 3 else 5
        assert [(h.id, h.score) for h in r.results] == [(h.id, h.score) for h in one.results][:k], i
        assert r.terms == one.terms and r.query == one.query
