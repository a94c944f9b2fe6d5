"""``collect_agents``: every page in order, all or nothing, and the next page asked for while this one converts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.vendors._http import Page, collect_agents
from app.vendors.base import Agent, VendorDataError

PAGES = {None: Page([1, 2], "b", 5), "b": Page([3, 4], "c", 5), "c": Page([5, 3], None, 5)}


def agent(raw: Any, position: int) -> Agent:
    if raw == "bad":
        raise VendorDataError(f"item {position} is bad")
    return Agent(vendor="v", id=f"a{raw}", hostname="", serial=None, attributes={"v:n": raw})


def collect(fetch: Any, convert: Any = agent, max_pages: int = 10) -> list[Agent]:
    return collect_agents(
        fetch,
        convert,
        label="Vendor",
        path="/agents",
        progress=None,
        clock=lambda: 0.0,
        max_pages=max_pages,
        pointer_name="cursor",
    )


def test_every_page_in_order_and_a_relisted_agent_keeps_its_first_place_with_the_newer_copy() -> None:
    agents = collect(lambda token: PAGES[token])
    assert [(a.id, a.attributes["v:n"]) for a in agents] == [("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4), ("a5", 5)]


def test_the_next_page_is_fetched_while_this_page_converts() -> None:
    """The fetch of page 2 starts before page 1's items are converted (and runs off the converting thread)."""
    fetching = threading.Event()
    fetched_on: list[str] = []

    def fetch(token: str | None) -> Page:
        fetched_on.append(threading.current_thread().name)
        if token == "b":
            fetching.set()
        return PAGES[token]

    def convert(raw: Any, position: int) -> Agent:
        if raw == 1:
            assert fetching.wait(5), "page 2 was not asked for while page 1 converted"
        return agent(raw, position)

    assert len(collect(fetch, convert)) == 5
    assert threading.current_thread().name not in fetched_on


def test_a_failing_later_page_loses_everything() -> None:
    def fetch(token: str | None) -> Page:
        if token == "c":
            raise VendorDataError("page 3 failed")
        return PAGES[token]

    with pytest.raises(VendorDataError, match="page 3 failed"):
        collect(fetch)


def test_a_bad_item_fails_and_paging_stops() -> None:
    asked: list[str | None] = []

    def fetch(token: str | None) -> Page:
        asked.append(token)
        return Page(["bad"], "b", None) if token is None else PAGES[token]

    with pytest.raises(VendorDataError, match="item 0 is bad"):
        collect(fetch)
    assert asked[:1] == [None] and "c" not in asked  # at most the one page already asked for


def test_a_repeated_cursor_and_too_many_pages_are_data_errors() -> None:
    with pytest.raises(VendorDataError, match="repeated a cursor"):
        collect(lambda token: Page([1], "b", None))
    with pytest.raises(VendorDataError, match="more pages after 2"):
        collect(lambda token: PAGES[token], max_pages=2)


def test_equal_string_values_of_different_agents_become_one_object() -> None:
    """JSON decoding makes a new string per occurrence; a listing keeps one object per distinct value (memory)."""
    import json

    pages = {
        None: Page(json.loads('[{"id": 1, "s": "compliant", "n": 1}, {"id": 2, "s": "compliant", "n": 1}]'), "b"),
        "b": Page(json.loads('[{"id": 3, "s": "compliant", "n": true}, {"id": 4, "s": "noncompliant"}]'), None),
    }

    def convert(raw: Any, position: int) -> Agent:
        attributes = {f"v:{k}": v for k, v in raw.items() if k != "id"}
        return Agent(vendor="v", id=str(raw["id"]), hostname="", serial=None, attributes=attributes)

    agents = collect(lambda token: pages[token], convert)
    values = [a.attributes.get("v:s") for a in agents]
    assert values == ["compliant", "compliant", "compliant", "noncompliant"]
    assert values[0] is values[1] is values[2]  # three decoded copies, one object kept
    assert [a.attributes.get("v:n") for a in agents] == [1, 1, True, None]
    assert type(agents[2].attributes["v:n"]) is bool  # only strings are shared: True stays True
