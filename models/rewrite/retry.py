"""The retry policy, one for both backends (transformers in models/rewrite/hf.py, vLLM in vllm_worker.py).

An output whose rewrite part (:func:`models.rewrite.parse.finalize`) is empty or shorter than ``retry_min_words``
words is generated once more with sampling (``retry_temperature``, ``retry_top_p``), seeded per request by
:func:`retry_seed` from ``seed`` and the request's messages (:func:`models.rewrite.prompt.input_hash`): the same
request samples the same retry whatever batch, backend call or resumed run it is in. :func:`choose` keeps the
retry when it passes the rule, else the longer rewrite. A backend gives :func:`with_retries` its first outputs and
a way to sample some requests with given seeds. Standard library only (the vLLM worker reads it).
"""

from __future__ import annotations

import hashlib
from typing import Callable, NamedTuple, Sequence

from models.rewrite.config import RewriteConfig
from models.rewrite.parse import finalize


class Rewritten(NamedTuple):
    text: str  # the teacher text (the rewrite, or "<rewrite> <answer>")
    attempts: int  # 1, or 2 after a retry
    raw_retry: str | None  # the retry's raw output, if any


def needs_retry(text: str, min_words: int) -> bool:
    """True when a rewrite is empty or has fewer than ``min_words`` words."""
    return len((text or "").split()) < max(min_words, 1)


def retry_seed(seed: int, input_hash: str) -> int:
    """The sampling seed of one request's retry (31 bits, which torch and vLLM both take)."""
    return int(hashlib.sha256(f"{seed}:{input_hash}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def choose(first: tuple[str, str], retry: tuple[str, str], min_words: int) -> str:
    """Which of two finalized outputs to keep after a retry: the retry when it passes the rule,
    else whichever rewrite part has more words (ties keep the first)."""
    if not needs_retry(retry[1], min_words):
        return retry[0]
    return retry[0] if len(retry[1].split()) > len(first[1].split()) else first[0]


def with_retries(raws: Sequence[str], input_hashes: Sequence[str], cfg: RewriteConfig,
                 sample: Callable[[list[int], list[int]], list[str]]) -> list[Rewritten]:
    """The results of one batch: ``raws`` are the first (greedy or beam) outputs of its requests, ``input_hashes``
    their messages' hashes; ``sample(indices, seeds)`` generates the requests at ``indices`` once more with
    sampling, each with its seed, and returns their raw outputs."""
    first = [finalize(raw, cfg.mode) for raw in raws]
    out = [Rewritten(text, 1, None) for text, _ in first]
    todo = [i for i, (_, part) in enumerate(first) if needs_retry(part, cfg.retry_min_words)]
    if todo:
        again = sample(todo, [retry_seed(cfg.seed, input_hashes[i]) for i in todo])
        for i, raw in zip(todo, again):
            out[i] = Rewritten(choose(first[i], finalize(raw, cfg.mode), cfg.retry_min_words), 2, raw)
    return out
