"""Fewer full garbage collections while a bulk job builds many long-lived objects.

CPython runs a full (oldest-generation) collection whenever the objects that survived into the old generation
have grown by a quarter since the last one, and each full collection walks every tracked object in the process.
A posture sync at 50,000 agents builds several hundred thousand objects that live until it ends (agents,
devices, the plan), so it paid for a full collection again and again as they piled up: 0.4-0.8 s of a 2-3.6 s
re-sync (measured with ``gc.callbacks``). While a job holds ``fewer_full_collections()`` the oldest generation's
threshold is raised so full collections wait for the job to end; young collections keep running, so short-lived
cycles are still freed as before.

Written here because no library does it: it is one threshold, saved and restored, counted across threads so
that overlapping jobs (the scheduler syncs vendors in parallel) restore it only when the last one ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Full collections are considered after this many collections of the middle generation (CPython's default: 10);
# at 700 allocations a young collection, that is about 70 million allocations: more than any one job makes.
PAUSED_THRESHOLD = 100_000

_lock = threading.Lock()
_holders = 0
_saved: int | None = None


@contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Hold off full collections until the block ends (the last of overlapping blocks restores the threshold)."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            young, middle, oldest = gc.get_threshold()
            _saved = oldest
            gc.set_threshold(young, middle, max(oldest, PAUSED_THRESHOLD))
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved is not None:
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, _saved)
                _saved = None
