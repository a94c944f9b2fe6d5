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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Pace(Protocol):
    """Called between steps, with the step's weight in small steps (``Pacer``, or ``no_pace``)."""

    def __call__(self, weight: int = 1) -> None: ...


SLICE = 0.001
"""Seconds of work between two rests."""
REST = 0.0005
"""Seconds of each rest: long enough for a waiting thread to be scheduled and take the GIL."""
RUN = 1024
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

    def __call__(self, weight: int = 1) -> None:
        """One step done; ``weight``: how many small steps it was worth (a C call sorting a run counts as many)."""
        self._calls += weight
        if self._calls < self.check_every:
            return
        self._calls = 0
        now = time.perf_counter()
        if now - self._since >= self.work:
            time.sleep(self.rest)
            self.rests += 1
            self._since = time.perf_counter()


def no_pace(weight: int = 1) -> None:
    """A pacer that never rests (tests, and callers that hold no one up)."""


def paced_sorted(items: Sequence[T], key: Callable[[T], Any], pace: Pace, run: int = RUN) -> list[T]:
    """``sorted(items, key=key)`` (stable) in runs of ``run`` items merged in Python, pacing between steps.

    ``items`` may be a ``range``: it is never copied whole (``list(range(400_000))`` alone is a 10 ms C call).
    """
    if len(items) <= run:
        return sorted(items, key=key)
    runs: list[list[T]] = []
    for start in range(0, len(items), run):
        runs.append(sorted(items[start : start + run], key=key))
        pace(run)
    out: list[T] = []
    for item in heapq.merge(*runs, key=key):  # equal keys keep the order of the runs: stable like sorted
        out.append(item)
        pace()
    return out


def paced_map(items: Sequence[int], lookup: Callable[[int], T], pace: Pace, run: int = RUN) -> list[T]:
    """``[lookup(i) for i in items]`` built ``run`` items at a time, pacing between (one comprehension over
    400k items is a 15 ms stretch with no rest)."""
    out: list[T] = []
    for start in range(0, len(items), run):
        out.extend(map(lookup, items[start : start + run]))
        pace(run)
    return out


def paced_equal(a: Sequence[Any], b: Sequence[Any], pace: Pace, run: int = RUN) -> bool:
    """Whether two long sequences (a list and a tuple alike) hold equal items in order, compared ``run`` items at
    a time (50k devices at once: 34 ms)."""
    if len(a) != len(b):
        return False
    for start in range(0, len(a), run):
        if list(a[start : start + run]) != list(b[start : start + run]):
            return False
        pace(run)
    return True


def release(parts: list[list[Any]], pace: Pace, run: int = RUN) -> None:
    """Empty ``parts`` ``run`` items at a time, pacing between: whatever only they hold is freed in slices, where
    dropping the last reference to a million objects at once frees them in one long C call."""
    for part in parts:
        while part:
            del part[-run:]
            pace(run)


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
