"""``collect_offset_pages``: offset pages asked for several at once, yet every agent once, in listing order, all or
nothing; a short page or a grown total is followed up one request at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from app.vendors._http import collect_offset_pages
from app.vendors.base import Agent, VendorDataError, VendorTransientError


def agent(raw: Any, position: int) -> Agent:
    return Agent(vendor="v", id=f"a{raw}", hostname="", serial=None, attributes={"v:n": raw})


def listing(n: int, cap: int | None = None) -> Callable[[int, int], tuple[list[Any], int]]:
    """A server holding items 0..n-1; ``cap`` is a page size it will not exceed whatever is asked."""
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        with lock:
            calls.append((skip, limit))
        size = limit if cap is None else min(limit, cap)
        return list(range(n))[skip : skip + size], n

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


def collect(fetch: Any, *, limit: int = 10, in_flight: int = 4, max_pages: int = 1000) -> list[Agent]:
    return collect_offset_pages(
        fetch,
        agent,
        limit=limit,
        in_flight=in_flight,
        label="Vendor",
        path="/systems",
        progress=None,
        clock=lambda: 0.0,
        max_pages=max_pages,
    )


def ids(agents: list[Agent]) -> list[int]:
    return [a.attributes["v:n"] for a in agents]  # type: ignore[misc]


@pytest.mark.parametrize("in_flight", [1, 4])
@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 95, 100])
def test_every_item_once_in_order(n: int, in_flight: int) -> None:
    fetch = listing(n)
    assert ids(collect(fetch, in_flight=in_flight)) == list(range(n))
    assert len(fetch.calls) == max(1, -(-n // 10))  # type: ignore[attr-defined]


def test_pages_answering_out_of_order_keep_the_listing_order() -> None:
    """The page at skip 10 is held until the page at skip 30 has answered."""
    later_answered = threading.Event()
    inner = listing(40)

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        if skip == 10:
            assert later_answered.wait(10), "the later page was not asked for meanwhile"
        page = inner(skip, limit)
        if skip == 30:
            later_answered.set()
        return page

    assert ids(collect(fetch)) == list(range(40))


def test_requests_overlap() -> None:
    """Four requests are in flight at once: each waits for the others (a sequential client would time out)."""
    barrier = threading.Barrier(4, timeout=10)
    inner = listing(50)

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        if skip in (10, 20, 30, 40):
            barrier.wait()
        return inner(skip, limit)

    assert ids(collect(fetch)) == list(range(50))


def test_one_in_flight_is_one_after_another() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    inner = listing(50)

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            return inner(skip, limit)
        finally:
            with lock:
                active -= 1

    assert ids(collect(fetch, in_flight=1)) == list(range(50))
    assert peak == 1


def test_a_failing_page_fails_the_listing() -> None:
    inner = listing(60)

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        if skip == 30:
            raise VendorTransientError("Vendor API GET /systems: HTTP 503")
        return inner(skip, limit)

    with pytest.raises(VendorTransientError, match="503"):
        collect(fetch)


def test_a_server_capping_the_page_size_loses_nothing() -> None:
    """Asked for 10, it answers 5: the first page is short, so paging goes on one request at a time from there."""
    fetch = listing(23, cap=5)
    assert ids(collect(fetch)) == list(range(23))
    assert fetch.calls == [(0, 10), (5, 10), (10, 10), (15, 10), (20, 10)]  # type: ignore[attr-defined]


def test_a_short_page_in_the_middle_is_followed_up_from_where_it_ended() -> None:
    """Page skip=10 answers 4 items only (a hiccup): items 14..19 are asked for before page skip=20 is taken."""
    inner = listing(35)

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        items, total = inner(skip, limit)
        return (items[:4] if skip == 10 and limit == 10 else items), total

    assert ids(collect(fetch)) == list(range(35))


def test_a_total_that_grew_meanwhile_is_followed_to_its_end() -> None:
    state = {"n": 30}

    def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
        if skip == 20:
            state["n"] = 37  # systems enrolled while paging: this page tells the new total
        n = state["n"]
        return list(range(n))[skip : skip + limit], n

    assert ids(collect(fetch, in_flight=1)) == list(range(37))
    state["n"] = 30
    assert ids(collect(fetch, in_flight=4)) == list(range(37))


def test_more_pages_than_allowed_is_a_data_error() -> None:
    with pytest.raises(VendorDataError, match="more pages after 3"):
        collect(listing(100), max_pages=3)
    with pytest.raises(VendorDataError, match="more pages after 3"):
        collect(listing(100), max_pages=3, in_flight=1)
