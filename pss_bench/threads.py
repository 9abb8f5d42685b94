"""Threads: how many to use, and the one ordered, cancellable map over images.

Decoding PNGs and scoring images release the GIL, so every per-image loop of
the library runs through :func:`map_ordered`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_ordered(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None,
                progress: Callable[[int, int], None] | None = None, name: str = "pss") -> Iterator[R]:
    """``fn`` over ``items`` on ``workers`` threads (default: :func:`default_workers`), results in order.

    One worker (or one item) runs in this thread. The first exception is
    re-raised in order; the items not started yet are cancelled and the
    running ones finished before it propagates (no thread outlives the call).

    Args:
        progress: called as ``progress(done, total)`` after each result.
        name: the threads' name prefix (seen in py-spy and tracebacks).
    """
    workers = workers or default_workers()
    total = len(items)
    if workers == 1 or total <= 1:
        for done, item in enumerate(items, 1):
            yield fn(item)
            if progress:
                progress(done, total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as ex:
        try:
            for done, r in enumerate(ex.map(fn, items), 1):
                yield r
                if progress:
                    progress(done, total)
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise

