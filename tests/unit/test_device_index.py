"""DeviceIndex: prefix search over every field, own-first ordering, limits, refreshes and single flight.

The tailnet is a fake that counts ``list_devices`` calls and can hold a call on an ``Event``; nothing
here sleeps or asserts on timing.
"""

from __future__ import annotations

import logging
import random
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator

import pytest

from app.core.clock import FrozenClock
from app.slack.device_index import DeviceIndex, DeviceMatches, device_tokens
from app.tailnet.models import Device

ALICE = "alice@example.com"
BOB = "bob@example.com"


def dev(
    name: str,
    *,
    user: str = BOB,
    id: str | None = None,
    node_id: str | None = None,
    hostname: str | None = None,
    tags: Iterable[str] = (),
    addresses: Iterable[str] = (),
    os: str = "linux",
) -> Device:
    short = name.split(".", 1)[0]
    return Device(
        id=id or str(zlib.crc32(name.encode()) + 10**15),
        node_id=node_id or f"n{short.replace('-', '')[:10]}CNTRL",
        name=name,
        hostname=hostname or short,
        user=user,
        os=os,
        tags=tuple(tags),
        addresses=tuple(addresses),
    )


LAPTOP = dev(
    "alice-laptop.tail1234.ts.net",
    user=ALICE,
    id="1111222233334444",
    node_id="nAL1CE1CNTRL",
    hostname="Alices-MacBook-Pro",
    addresses=("100.64.0.1", "fd7a:115c:a1e0::1"),
    os="macOS",
)
PHONE = dev("alice-phone.tail1234.ts.net", user=ALICE, id="1111555566667777", addresses=("100.64.0.2",))
DB = dev(
    "db-prod-1.tail1234.ts.net",
    user=BOB,
    id="2222333344445555",
    node_id="nDBPR0D1CNTRL",
    tags=("tag:prod", "tag:database"),
    addresses=("100.101.7.9", "fd7a:115c:a1e0::ab:79"),
)
BUILD = dev("build-runner.tail1234.ts.net", user=BOB, id="3333444455556666", tags=("tag:ci",))
ALL = [LAPTOP, PHONE, DB, BUILD]
REFERENCE_QUERIES = (
    *("", "l", "la", "lap", "laptop", "laptop-1", "1", "100.", "100.65.", "100.64.1.2"),
    *("n0000", "tag:", "prod", "tag:laptops", "d", "db-59", "x", "w", "q"),
)


class FakeTailnet:
    """Serves a device list, counts calls, can fail, and can hold a call until ``gate`` is set."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self.devices = list(devices)
        self.calls = 0
        self.error: Exception | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def list_devices(self) -> list[Device]:
        self.calls += 1
        self.entered.set()
        if self.gate is not None and not self.gate.wait(10):
            raise RuntimeError("test gate never opened")
        if self.error is not None:
            raise self.error
        return list(self.devices)


@pytest.fixture
def tailnet() -> FakeTailnet:
    return FakeTailnet(ALL)


@pytest.fixture
def index(tailnet: FakeTailnet, clock: FrozenClock) -> DeviceIndex:
    idx = DeviceIndex(tailnet, clock=clock)
    assert idx.refresh()
    return idx


@pytest.fixture
def gated(tailnet: FakeTailnet) -> Iterator[threading.Event]:
    """Hold the fake's ``list_devices`` until the returned event is set (always set at teardown)."""
    gate = threading.Event()
    tailnet.gate = gate
    yield gate
    gate.set()


def names(devices: list[Device]) -> list[str]:
    return [d.short_name for d in devices]


def found(index: DeviceIndex, query: str) -> list[str]:
    return names(index.search(query).devices)


# -- matching ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice-laptop.tail1234", ["alice-laptop"]),  # full MagicDNS name
        ("alice-laptop.tail1234.ts.net", ["alice-laptop"]),
        ("alice-l", ["alice-laptop"]),  # its first label
        ("alice", ["alice-laptop", "alice-phone"]),
        ("alices-mac", ["alice-laptop"]),  # hostname
        ("nal1ce", ["alice-laptop"]),  # nodeId
        ("nDBPR0D1CNTRL", ["db-prod-1"]),
        ("11115555", ["alice-phone"]),  # legacy id
        ("1111", ["alice-laptop", "alice-phone"]),
        ("100.64.0.", ["alice-laptop", "alice-phone"]),  # IPv4
        ("100.101", ["db-prod-1"]),
        ("fd7a:115c:a1e0::ab", ["db-prod-1"]),  # IPv6
        ("fd7a:", ["alice-laptop", "db-prod-1"]),
        ("tag:pr", ["db-prod-1"]),  # tag with its prefix
        ("datab", ["db-prod-1"]),  # tag without it
        ("tag:", ["build-runner", "db-prod-1"]),
        ("ci", ["build-runner"]),
    ],
)
def test_prefix_matches_every_field(index: DeviceIndex, query: str, expected: list[str]) -> None:
    assert found(index, query) == expected


@pytest.mark.parametrize("query", ["laptop", "tail1234", "ts.net", "rod", "0.1", "cntrl", "example.com", "zzz"])
def test_only_prefixes_match_not_infixes_or_owner(index: DeviceIndex, query: str) -> None:
    """``laptop`` is inside ``alice-laptop`` but starts none of its tokens; owner emails are not searched."""
    assert found(index, query) == []


def test_matching_is_case_insensitive(index: DeviceIndex) -> None:
    assert found(index, "ALICE-Laptop") == ["alice-laptop"]
    assert found(index, "ALICES-macbook") == ["alice-laptop"]  # data in mixed case too
    assert found(index, "TAG:PROD") == ["db-prod-1"]
    assert found(index, "FD7A:115C") == ["alice-laptop", "db-prod-1"]
    assert found(index, "  alice-phone  ") == ["alice-phone"]


def test_device_tokens_are_unique_and_folded() -> None:
    assert device_tokens(DB) == tuple(
        sorted(
            {
                "db-prod-1.tail1234.ts.net",
                "db-prod-1",
                "ndbpr0d1cntrl",
                "2222333344445555",
                "100.101.7.9",
                "fd7a:115c:a1e0::ab:79",
                "tag:prod",
                "prod",
                "tag:database",
                "database",
            }
        )
    )


# -- ordering, owner, limit --------------------------------------------------------------------------------


def test_own_devices_come_first_and_are_not_repeated(index: DeviceIndex) -> None:
    matches = index.search("", owner_email=ALICE)
    assert names(matches.mine) == ["alice-laptop", "alice-phone"]
    assert names(matches.others) == ["build-runner", "db-prod-1"]

    matches = index.search("", owner_email=BOB)
    assert names(matches.mine) == ["build-runner", "db-prod-1"]
    assert names(matches.others) == ["alice-laptop", "alice-phone"]

    matches = index.search("100.", owner_email=ALICE)
    assert names(matches.mine) == ["alice-laptop", "alice-phone"]
    assert names(matches.others) == ["db-prod-1"]


def test_owner_email_is_case_insensitive(index: DeviceIndex) -> None:
    assert names(index.search("a", owner_email="  Alice@EXAMPLE.com ").mine) == ["alice-laptop", "alice-phone"]
    assert names(index.owned_by("ALICE@example.com")) == ["alice-laptop", "alice-phone"]
    assert index.owned_by("nobody@example.com") == []


def test_unknown_or_missing_owner_gives_only_others(index: DeviceIndex) -> None:
    for owner in (None, "", "carol@example.com"):
        matches = index.search("", owner_email=owner)
        assert matches.mine == []
        assert names(matches.others) == ["alice-laptop", "alice-phone", "build-runner", "db-prod-1"]


def test_owned_devices_that_do_not_match_stay_out(index: DeviceIndex) -> None:
    matches = index.search("db", owner_email=ALICE)
    assert matches.mine == []
    assert names(matches.others) == ["db-prod-1"]


def test_limit_bounds_both_lists_together(index: DeviceIndex) -> None:
    matches = index.search("", owner_email=ALICE, limit=3)
    assert names(matches.mine) == ["alice-laptop", "alice-phone"]
    assert names(matches.others) == ["build-runner"]

    matches = index.search("", owner_email=ALICE, limit=1)
    assert names(matches.mine) == ["alice-laptop"]
    assert matches.others == []

    assert len(index.search("", owner_email=ALICE, limit=0)) == 0
    assert len(index.search("", limit=-5)) == 0


def test_results_are_in_name_order_whatever_the_source_order(clock: FrozenClock) -> None:
    devices = [dev(f"host-{i:03d}.tail1234.ts.net", id=str(10**15 + i)) for i in range(200)]
    shuffled = devices[:]
    random.Random(7).shuffle(shuffled)
    index = DeviceIndex(FakeTailnet(shuffled), clock=clock)
    assert index.refresh()
    assert names(index.search("host-1").others) == [f"host-{i:03d}" for i in range(100, 200)]
    assert names(index.search("", limit=5).others) == [f"host-{i:03d}" for i in range(5)]
    assert index.size == 200


def test_default_limit_is_100_and_mine_fills_first(clock: FrozenClock) -> None:
    devices = [dev(f"m{i:03d}.ts.net", user=ALICE, id=str(10**15 + i)) for i in range(70)]
    devices += [dev(f"o{i:03d}.ts.net", user=BOB, id=str(2 * 10**15 + i)) for i in range(70)]
    index = DeviceIndex(FakeTailnet(devices), clock=clock)
    index.refresh()
    matches = index.search("", owner_email=ALICE)
    assert (len(matches.mine), len(matches.others)) == (70, 30)
    assert names(matches.others)[-1] == "o029"


def test_search_equals_a_brute_force_reference_on_a_large_tailnet(clock: FrozenClock) -> None:
    """Big ranges (memoized path), small ranges and owners of many devices agree with a linear scan."""
    rng = random.Random(42)
    users = [f"user{i}@example.com" for i in range(30)] + ["robot@example.com"] * 30
    devices = [
        dev(
            f"{rng.choice(['laptop', 'lap', 'db', 'web', 'x'])}-{i}.tail1234.ts.net",
            id=str(10**15 + i * 7919),
            node_id=f"n{i:08d}CNTRL",
            user=rng.choice(users),
            tags=rng.sample(["tag:prod", "tag:dev", "tag:web", "tag:laptops"], rng.randrange(3)),
            addresses=(f"100.{64 + i % 3}.{i // 250}.{i % 250}",),
        )
        for i in range(6000)
    ]
    index = DeviceIndex(FakeTailnet(devices), clock=clock)
    index.refresh()
    ordered = [(d, device_tokens(d)) for d in sorted(devices, key=lambda d: d.name)]

    def reference(query: str, owner: str | None, limit: int) -> DeviceMatches:
        q = query.strip().casefold()
        hits = [d for d, tokens in ordered if not q or any(t.startswith(q) for t in tokens)]
        mine = [d for d in hits if owner and d.user.casefold() == owner.casefold()][:limit]
        taken = {d.id for d in mine}
        others = [d for d in hits if d.id not in taken][: limit - len(mine)]
        return DeviceMatches(mine, others)

    for query in REFERENCE_QUERIES:
        for owner in (None, "robot@example.com", "USER3@example.com"):
            for limit in (1, 20, 100, 300):
                assert index.search(query, owner_email=owner, limit=limit) == reference(query, owner, limit), (
                    query,
                    owner,
                    limit,
                )
    # asking again answers from the memo, with the same result
    assert index.search("l", limit=100) == reference("l", None, 100)
    assert index.search("l", limit=300) == reference("l", None, 300)


def test_the_ranges_warmed_at_build_equal_the_ones_computed_on_demand() -> None:
    """The memo entries a snapshot computes while it is built (run by run, paced) are exactly what a request
    would compute itself, complete or not."""
    from app.slack.device_snapshot import _smallest_distinct, _warm_heads

    rng = random.Random(7)
    keys = sorted(rng.choice(["a", "ab", "abc", "b", "ba", "c"]) + str(rng.randrange(50)) for _ in range(30_000))
    ranks = [rng.randrange(9_000) for _ in keys]
    few = [rng.randrange(100) for _ in keys]  # at most 100 distinct: complete entries
    for source in (ranks, few):
        warm = _warm_heads(keys, source, lambda weight=1: None)
        assert warm, "the test must reach ranges big enough to be warmed"
        for (lo, hi), value in warm.items():
            unique = sorted(set(source[lo:hi]))
            assert value == (tuple(unique[:256]), len(unique) <= 256)
            assert len({key[:2] for key in keys[lo:hi]}) == 1 or len({key[:1] for key in keys[lo:hi]}) == 1
        assert _smallest_distinct(source, 5, 5, lambda weight=1: None) == ((), True)


# -- lookups -----------------------------------------------------------------------------------------------


def test_get_by_id_or_node_id(index: DeviceIndex) -> None:
    assert index.get("1111222233334444") == LAPTOP
    assert index.get("nAL1CE1CNTRL") == LAPTOP
    assert index.get("nal1ce1cntrl") is None  # ids are exact
    assert index.get("nope") is None


def test_empty_before_the_first_load(tailnet: FakeTailnet, clock: FrozenClock) -> None:
    index = DeviceIndex(tailnet, clock=clock)
    assert index.size == 0
    assert index.loaded_at is None
    assert index.is_stale
    assert len(index.search("", owner_email=ALICE)) == 0
    assert index.get(LAPTOP.id) is None
    assert tailnet.calls == 0


def test_search_and_lookups_never_call_the_tailnet(index: DeviceIndex, tailnet: FakeTailnet) -> None:
    calls = tailnet.calls
    for query in ["", "a", "al", "ali", "alice", "100.64", "tag:", "zzz"]:
        index.search(query, owner_email=ALICE)
    index.get(LAPTOP.id)
    index.owned_by(ALICE)
    assert tailnet.calls == calls == 1


# -- refreshing ----------------------------------------------------------------------------------------------


def test_refresh_swaps_in_new_devices_and_drops_removed_ones(
    index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock
) -> None:
    first = index.loaded_at
    assert first == clock()
    server = dev("server-9.tail1234.ts.net", user=ALICE, id="9999000011112222", addresses=("100.99.0.1",))
    tailnet.devices = [LAPTOP, DB, BUILD, server]  # PHONE removed, server added
    clock.advance(seconds=5)

    assert index.refresh()
    assert index.loaded_at == clock() != first
    assert index.size == 4
    assert found(index, "alice-phone") == []
    assert index.get(PHONE.id) is None
    assert found(index, "100.99") == ["server-9"]
    assert index.get("9999000011112222") == server
    assert names(index.owned_by(ALICE)) == ["alice-laptop", "server-9"]


def test_an_unchanged_list_keeps_the_snapshot_and_moves_loaded_at(
    index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock
) -> None:
    snapshot = index._snapshot
    clock.advance(seconds=90)
    assert index.refresh()
    assert index._snapshot is snapshot
    assert index.loaded_at == clock()
    assert not index.is_stale


def test_a_failing_refresh_keeps_the_old_snapshot(
    index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    loaded_at = index.loaded_at
    tailnet.devices = []
    tailnet.error = RuntimeError("tailscale is down")
    clock.advance(seconds=120)

    with caplog.at_level(logging.WARNING, logger="app.slack.device_index"):
        assert not index.refresh()

    assert index.size == 4
    assert found(index, "alice") == ["alice-laptop", "alice-phone"]
    assert index.loaded_at == loaded_at
    assert isinstance(index.last_error, RuntimeError)
    assert "tailscale is down" in caplog.text
    assert "keeping 4 devices" in caplog.text

    tailnet.error = None
    assert index.refresh()
    assert index.last_error is None
    assert index.size == 0


def test_refresh_if_stale_does_nothing_while_fresh(
    index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock
) -> None:
    clock.advance(seconds=59)
    assert not index.is_stale
    assert not index.refresh_if_stale()
    assert not index.refreshing
    assert tailnet.calls == 1


def run_in_thread(call: Callable[[], bool]) -> tuple[threading.Thread, list[bool]]:
    """Run ``call`` on its own thread, as the scheduler runs the refresh job; its result lands in the list."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    return thread, result


def test_a_stale_index_is_refreshed_once_by_the_job_and_keeps_answering_meanwhile(
    index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock, gated: threading.Event
) -> None:
    tailnet.devices = [LAPTOP, PHONE, DB]  # BUILD goes away
    clock.advance(seconds=60)
    assert index.is_stale

    job, result = run_in_thread(index.refresh_if_stale)
    assert tailnet.entered.wait(5)
    for _ in range(20):  # every keystroke while the fetch hangs: no second fetch, old answers
        assert not index.refresh_if_stale()
        assert found(index, "build") == ["build-runner"]
    assert index.refreshing
    assert index.ensure_loaded(timeout=0)  # already loaded: returns at once despite the hanging fetch
    assert tailnet.calls == 2

    gated.set()
    job.join(5)
    assert result == [True]
    assert not index.refreshing
    assert found(index, "build") == []
    assert index.loaded_at == clock()
    assert not index.refresh_if_stale()
    assert tailnet.calls == 2


def test_single_flight_under_concurrent_callers(
    index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock, gated: threading.Event
) -> None:
    clock.advance(minutes=5)
    started: list[bool] = []
    returned = threading.Condition()
    barrier = threading.Barrier(16)

    def keystroke() -> None:
        barrier.wait()
        fetched = index.refresh_if_stale()
        index.search("alice", owner_email=ALICE)
        with returned:
            started.append(fetched)
            returned.notify_all()

    threads = [threading.Thread(target=keystroke) for _ in range(16)]
    for thread in threads:
        thread.start()
    with returned:  # fifteen callers return at once; the one that fetches hangs on the gate
        assert returned.wait_for(lambda: len(started) == 15, 5)
    assert started == [False] * 15
    assert tailnet.calls == 2
    gated.set()
    for thread in threads:
        thread.join(5)
    assert started.count(True) == 1
    assert tailnet.calls == 2


def test_a_failed_refresh_waits_before_retrying(index: DeviceIndex, tailnet: FakeTailnet, clock: FrozenClock) -> None:
    tailnet.error = RuntimeError("429 rate limited")
    clock.advance(seconds=61)
    assert index.refresh_if_stale()
    assert isinstance(index.last_error, RuntimeError)
    assert index.size == 4

    clock.advance(seconds=9)
    assert not index.refresh_if_stale()  # within retry_after
    clock.advance(seconds=1)
    tailnet.error = None
    assert index.refresh_if_stale()
    assert index.last_error is None
    assert tailnet.calls == 3


def test_ensure_loaded_loads_synchronously_only_for_the_first_load(tailnet: FakeTailnet, clock: FrozenClock) -> None:
    index = DeviceIndex(tailnet, clock=clock)
    assert index.ensure_loaded(timeout=5)
    assert index.size == 4
    assert tailnet.calls == 1
    clock.advance(hours=1)
    assert index.ensure_loaded(timeout=5)  # stale, but loaded: no fetch
    assert tailnet.calls == 1


def test_ensure_loaded_waits_at_most_its_timeout_for_a_running_first_load_which_still_lands(
    tailnet: FakeTailnet, clock: FrozenClock, gated: threading.Event
) -> None:
    index = DeviceIndex(tailnet, clock=clock)
    first, result = run_in_thread(index.ensure_loaded)
    assert tailnet.entered.wait(5)
    assert not index.ensure_loaded(timeout=0)  # waits for the same fetch rather than starting another
    assert not index.ensure_loaded(timeout=0.01)
    assert tailnet.calls == 1
    gated.set()
    first.join(5)
    assert result == [True]
    assert index.ensure_loaded(timeout=0)
    assert index.size == 4


def test_ensure_loaded_reports_a_failed_first_load(tailnet: FakeTailnet, clock: FrozenClock) -> None:
    tailnet.error = RuntimeError("bad credentials")
    index = DeviceIndex(tailnet, clock=clock)
    assert not index.ensure_loaded(timeout=5)
    assert str(index.last_error) == "bad credentials"
    assert not index.ensure_loaded(timeout=5)  # within retry_after: no new attempt
    assert tailnet.calls == 1


def test_readers_see_whole_snapshots_while_refreshes_swap(clock: FrozenClock) -> None:
    """Every search answers from one complete snapshot: all 'a-' devices or all 'b-' devices."""
    old = [dev(f"a-{i:03d}.ts.net", id=str(10**15 + i), user=ALICE) for i in range(300)]
    new = [dev(f"b-{i:03d}.ts.net", id=str(2 * 10**15 + i), user=ALICE) for i in range(300)]
    tailnet = FakeTailnet(old)
    index = DeviceIndex(tailnet, clock=clock)
    index.refresh()
    stop = threading.Event()
    seen: list[tuple[int, set[str]]] = []

    def reader() -> None:
        while not stop.is_set():
            matches = index.search("", owner_email=ALICE, limit=300)
            seen.append((len(matches.mine), {d.short_name[0] for d in matches.mine}))

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    for i in range(20):
        tailnet.devices = new if i % 2 == 0 else old
        index.refresh()
    stop.set()
    for thread in readers:
        thread.join(5)
    assert seen
    assert all(count == 300 and len(prefixes) == 1 for count, prefixes in seen)


def test_devices_with_many_matching_tokens_are_listed_once(clock: FrozenClock) -> None:
    """200 devices x 24 tokens starting with ``t``: a big token range of few devices, deduped and cached."""
    tags = [f"tag:t{j}" for j in range(12)]
    devices = [dev(f"node-{i:03d}.ts.net", id=str(10**15 + i), tags=tags) for i in range(200)]
    index = DeviceIndex(FakeTailnet(devices), clock=clock)
    index.refresh()
    for limit in (10, 150, 250, 250):
        assert names(index.search("t", limit=limit).others) == [f"node-{i:03d}" for i in range(min(limit, 200))]


def test_a_query_ending_in_the_last_code_point(index: DeviceIndex) -> None:
    assert found(index, "alice\U0010ffff") == []
    assert found(index, "\U0010ffff") == []
