"""``fewer_full_collections``: full collections wait while a job runs, and the threshold always comes back."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from app.core.gc_pause import PAUSED_THRESHOLD, fewer_full_collections


@pytest.fixture(autouse=True)
def known_threshold() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_raises_only_the_oldest_threshold_and_restores_it() -> None:
    with fewer_full_collections():
        assert gc.get_threshold() == (700, 10, PAUSED_THRESHOLD)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_job_fails() -> None:
    with pytest.raises(RuntimeError), fewer_full_collections():
        raise RuntimeError("sync failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_young_collections_keep_running_inside() -> None:
    """Short-lived cycles are still freed while full collections wait."""
    collected: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        with fewer_full_collections():
            for _ in range(20_000):
                cycle: list[object] = []
                cycle.append(cycle)
    finally:
        gc.callbacks.remove(seen)
    assert 0 in collected
    assert 2 not in collected


def test_overlapping_jobs_restore_when_the_last_one_ends() -> None:
    """Two syncs in parallel (the scheduler runs vendors side by side): the first to end must not restore early."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    during: list[tuple[int, int, int]] = []

    def first() -> None:
        with fewer_full_collections():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with fewer_full_collections():
            second_in.set()
            first_out.wait(5)
            during.append(gc.get_threshold())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert during == [(700, 10, PAUSED_THRESHOLD)]
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_set_by_the_operator_is_kept() -> None:
    gc.set_threshold(700, 10, PAUSED_THRESHOLD * 2)
    with fewer_full_collections():
        assert gc.get_threshold() == (700, 10, PAUSED_THRESHOLD * 2)
    assert gc.get_threshold() == (700, 10, PAUSED_THRESHOLD * 2)

