"""``app.slack.pacing``: a paced sort gives exactly ``sorted``'s (stable) order; the collector is paused inside and
restored after; the pacer rests only once its slice of work is used up (a fake clock, no sleeping on timing)."""

from __future__ import annotations

import gc
import random

import pytest

from app.slack import pacing
from app.slack.pacing import Pacer, collector_paused, no_pace, paced_equal, paced_map, paced_sorted, release


@pytest.mark.parametrize("size", [0, 1, 5, 4096, 4097, 20_000])
def test_a_paced_sort_is_sorted_and_stable(size: int) -> None:
    rng = random.Random(size)
    items = [(rng.choice("abcde"), i) for i in range(size)]  # many equal keys: stability shows
    calls: list[int] = []
    result = paced_sorted(items, lambda item: item[0], lambda weight=1: calls.append(weight), run=1000)
    assert result == sorted(items, key=lambda item: item[0])
    assert (len(calls) > 0) == (size > 1000)
    assert all(weight == 1000 for weight in calls[: len(items) // 1000])  # each sorted run weighs its size


def test_a_range_is_sorted_without_being_copied_whole() -> None:
    keys = [random.Random(3).random() for _ in range(5000)]
    assert paced_sorted(range(5000), keys.__getitem__, no_pace, run=512) == sorted(range(5000), key=keys.__getitem__)


def test_paced_map_and_equal_agree_with_the_plain_forms() -> None:
    weights: list[int] = []
    items = list(range(2500))
    tripled = paced_map(items, lambda i: i * 3, lambda weight=1: weights.append(weight), run=1000)
    assert tripled == [i * 3 for i in items]
    assert weights == [1000, 1000, 1000]
    assert paced_equal(items, tuple(items), no_pace, run=1000)
    assert not paced_equal(items, [*items[:-1], -1], no_pace, run=1000)
    assert not paced_equal(items, items[:-1], no_pace, run=1000)


def test_a_heavy_step_makes_the_pacer_look_at_the_clock_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    slept: list[float] = []
    monkeypatch.setattr(pacing.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(pacing.time, "sleep", slept.append)
    pace = Pacer(work=0.001, rest=0.0005, check_every=64)
    now[0] = 0.01
    pace()
    assert slept == []  # one light step: the clock is not even read
    pace(1024)
    assert slept == [0.0005]


def test_the_collector_is_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.unfreeze()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()
        gc.unfreeze()


def test_the_pacer_rests_once_per_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    slept: list[float] = []
    monkeypatch.setattr(pacing.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(pacing.time, "sleep", slept.append)
    pace = Pacer(work=0.002, rest=0.0005, check_every=1)
    pace()
    assert slept == []
    now[0] = 0.0025
    pace()
    pace()
    assert slept == [0.0005] and pace.rests == 1
    no_pace()


def test_release_empties_the_copies_and_leaves_a_held_snapshot_intact() -> None:
    from app.slack.device_snapshot import Snapshot
    from app.tailnet.models import Device

    devices = [Device(id=str(i), node_id=f"n{i}", name=f"d{i}.ts.net", hostname=f"d{i}") for i in range(50)]
    snapshot = Snapshot.build(devices)
    parts = snapshot.parts()
    paces: list[int] = []
    release(parts, lambda weight=1: paces.append(weight), run=7)
    assert all(part == [] for part in parts) and len(paces) > 5
    assert len(snapshot.devices) == 50 and snapshot.prefix_range("d4") != (0, 0)  # a reader's snapshot still works
