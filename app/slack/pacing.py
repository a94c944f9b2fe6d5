"""Long CPU work in slices, so that the request threads of the same process keep their latency.

A device index rebuild at 50k devices is a second or two of pure Python on one thread. CPython hands the GIL
to a waiting thread only every 5 ms (``sys.getswitchinterval``), and not at all inside one long C call (a
``sorted`` of 400k strings) or a full garbage collection of a million new objects (100-300 ms measured): every
options answer of the process would wait behind it. ``Pacer`` makes the builder rest briefly every couple of
milliseconds (a sleep releases the GIL), ``paced_sorted`` cuts a big sort into short C calls and a merge,
``release`` frees a replaced snapshot in slices (dropping it at once took 50-90 ms), and ``collector_paused``
keeps the cyclic garbage collector out of the rebuild and the new snapshot out of later full collections
(``gc.freeze``: frozen objects are still freed by reference counting; only a reference cycle among objects
alive at that moment would outlive its use, and nothing of the index holds one).
"""

from __future__ import annotations

import gc
import heapq
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

SLICE = 0.002
"""Seconds of work between two rests."""
REST = 0.0005
"""Seconds of each rest: long enough for a waiting thread to be scheduled and take the GIL."""
RUN = 4096
"""Items per C-level sort in ``paced_sorted`` (a few milliseconds each)."""


class Pacer:
    """Call it often in a long loop; it sleeps ``rest`` once ``work`` seconds passed since the last rest."""

    def __init__(self, work: float = SLICE, rest: float = REST, *, check_every: int = 64) -> None:
        self.work = work
        self.rest = rest
        self.check_every = check_every
        self.rests = 0
        self._calls = 0
        self._since = time.perf_counter()

    def __call__(self) -> None:
        self._calls += 1
        if self._calls % self.check_every:
            return
        now = time.perf_counter()
        if now - self._since >= self.work:
            time.sleep(self.rest)
            self.rests += 1
            self._since = time.perf_counter()


def no_pace() -> None:
    """A pacer that never rests (tests, and callers that hold no one up)."""


def paced_sorted(items: list[T], key: Callable[[T], Any], pace: Callable[[], None], run: int = RUN) -> list[T]:
    """``sorted(items, key=key)`` (stable) in runs of ``run`` items merged in Python, pacing between steps."""
    if len(items) <= run:
        return sorted(items, key=key)
    runs: list[list[T]] = []
    for start in range(0, len(items), run):
        runs.append(sorted(items[start : start + run], key=key))
        pace()
    out: list[T] = []
    for item in heapq.merge(*runs, key=key):  # equal keys keep the order of the runs: stable like sorted
        out.append(item)
        pace()
    return out


def release(parts: list[list[Any]], pace: Callable[[], None], run: int = RUN) -> None:
    """Empty ``parts`` ``run`` items at a time, pacing between: whatever only they hold is freed in slices, where
    dropping the last reference to a million objects at once frees them in one long C call."""
    for part in parts:
        while part:
            del part[-run:]
            pace()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection inside; on the way out, what is alive is frozen out of later ones."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
