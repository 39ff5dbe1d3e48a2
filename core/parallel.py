"""Shard-level parallelism without an engine: library code maps a function over shards with :func:`pmap`; the
caller decides where the shards run. By default they run here, one after the other; the Prefect layer installs
a mapper that runs each shard as a Prefect task on the flow's task runner (a Ray cluster: ``tasks/parallel.py``).

A shard function is a module-level function of plain, picklable arguments (paths, configs, lists) whose result
depends on its arguments only, so the result is the same wherever the shard runs.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

# mapper(fn, argument tuples, name) -> [fn(*args) for each], in order
Mapper = Callable[[Callable[..., Any], Sequence[tuple], str], list]

_MAPPER: ContextVar[Mapper | None] = ContextVar("disco_mapper", default=None)


def serial(fn: Callable[..., Any], items: Sequence[tuple], name: str) -> list:
    """Every shard here, in order."""
    return [fn(*args) for args in items]


def pmap(fn: Callable[..., Any], items: Sequence[tuple], name: str) -> list:
    """``[fn(*args) for args in items]`` through the installed mapper (``name`` labels the shards)."""
    return (_MAPPER.get() or serial)(fn, list(items), name)


def distributed() -> bool:
    """Whether shards run elsewhere (a mapper is installed): then per-item progress is not reported."""
    return _MAPPER.get() is not None


@contextlib.contextmanager
def using(mapper: Mapper | None) -> Iterator[None]:
    """Run the :func:`pmap` calls of this block through ``mapper`` (None: here, serially)."""
    token = _MAPPER.set(mapper)
    try:
        yield
    finally:
        _MAPPER.reset(token)


def bounds(total: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of consecutive shards of at most ``size`` items covering ``range(total)``."""
    size = max(int(size), 1)
    return [(a, min(a + size, total)) for a in range(0, total, size)]
