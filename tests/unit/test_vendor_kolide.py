"""KolideClient against respx: cursor paging, version header, auth_state verbatim, retries and errors."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.core.http import RetryPolicy
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.kolide import SPEC, KolideClient, agent_from_kolide, build, normalize_base_url
from tests.fakes.sim_time import SimSleep

BASE = "https://api.kolide.com"
URL = f"{BASE}/devices"
KEY = "k2sk_v1_unit_key_abcdef"


def raw_device(i: int, **overrides: Any) -> dict[str, Any]:
    device: dict[str, Any] = {
        "id": str(48200 + i),
        "name": f"host-{i}",
        "serial": f"SN{i:04d}",
        "operating_system": "macOS 15.6.1",
        "device_type": "Mac",
        "form_factor": "Computer",
        "last_authenticated_at": "2026-11-30T08:12:00Z",
        "last_seen_at": "2026-11-30T09:02:31Z",
        "auth_state": "Good",
        "will_block_at": None,
        "registered_owner_info": {"identifier": "912", "location": "https://api.kolide.com/people/912"},
    }
    device.update(overrides)
    return device


def page(devices: list[dict[str, Any]], next_cursor: str = "", current: str = "") -> dict[str, Any]:
    return {
        "data": devices,
        "pagination": {
            "next": f"{URL}?per_page=100&cursor={next_cursor}" if next_cursor else "",
            "next_cursor": next_cursor,
            "current_cursor": current,
            "count": len(devices),
        },
    }


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Iterator[Callable[..., KolideClient]]:
    clients: list[KolideClient] = []

    def factory(**kwargs: Any) -> KolideClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(5))
        client = KolideClient(kwargs.pop("api_key", KEY), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def cursor_route(
    mock: respx.MockRouter, pages: dict[str | None, httpx.Response], seen: list[httpx.Request]
) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return pages[request.url.params.get("cursor")]

    return mock.get(URL).mock(side_effect=answer)


def test_cursor_pages_are_followed_until_next_cursor_is_blank(
    mock: respx.MockRouter, make: Callable[..., KolideClient]
) -> None:
    seen: list[httpx.Request] = []
    cursor_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_device(1), raw_device(2)], "Miwy")),
            "Miwy": httpx.Response(200, json=page([raw_device(3), raw_device(4)], "NCw0", "Miwy")),
            "NCw0": httpx.Response(200, json=page([raw_device(5)], "", "NCw0")),
        },
        seen,
    )
    progress: list[tuple[int, int | None]] = []
    agents = make().fetch_agents(progress=lambda n, total: progress.append((n, total)))
    assert [a.hostname for a in agents] == [f"host-{i}" for i in range(1, 6)]
    assert progress == [(2, None), (4, None), (5, None)]
    assert [r.url.params.get("cursor") for r in seen] == [None, "Miwy", "NCw0"]
    for request in seen:
        assert request.url.params["per_page"] == "100"
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.headers["X-Kolide-Api-Version"] == "2023-05-26"


def test_the_reference_sample_maps_verbatim() -> None:
    agent = agent_from_kolide(
        raw_device(0, id="48377", name="bo-thinkpad", serial="PF3ABC12", auth_state="Will Block",
                   will_block_at="2026-12-02T16:00:00Z", last_seen_at="2026-11-30T07:15:02Z")
    )  # fmt: skip
    assert (agent.vendor, agent.id, agent.hostname, agent.serial) == ("kolide", "48377", "bo-thinkpad", "PF3ABC12")
    assert dict(agent.attributes) == {"kolide:authState": "Will Block"}  # the space is kept
    assert agent.last_seen == datetime(2026, 11, 30, 7, 15, 2, tzinfo=UTC)
    assert agent.mac_addresses == ()  # Kolide reports no MACs
    for state in ("Good", "Notified", "Blocked"):
        assert agent_from_kolide(raw_device(1, auth_state=state)).attributes == {"kolide:authState": state}


@pytest.mark.parametrize("state", [None, "", "  "])
def test_a_missing_auth_state_leaves_the_attribute_unset(state: Any) -> None:
    agent = agent_from_kolide(raw_device(1, auth_state=state, last_seen_at=None))
    assert dict(agent.attributes) == {}
    assert agent.last_seen == datetime(2026, 11, 30, 8, 12, tzinfo=UTC)  # falls back to last_authenticated_at


def test_a_blank_serial_is_no_serial() -> None:
    assert agent_from_kolide(raw_device(1, serial="")).serial is None
    assert agent_from_kolide(raw_device(1, serial=None)).serial is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (None, "not an object"),
        (raw_device(1, id=""), "no usable id"),
        (raw_device(1, id=True), "no usable id"),
        (raw_device(1, auth_state=True), "auth_state"),
        (raw_device(1, serial=12), "serial"),
        (raw_device(1, last_seen_at="yesterday"), "last_seen_at"),
    ],
)
def test_malformed_devices_are_refused(raw: Any, match: str) -> None:
    with pytest.raises(VendorDataError, match=match):
        agent_from_kolide(raw)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"pagination": {}},
        {"data": {}},
        {"data": [], "pagination": []},
        {"data": [], "pagination": {"next_cursor": 3}},
    ],
)
def test_malformed_pages_are_data_errors(mock: respx.MockRouter, make: Callable[..., KolideClient], body: Any) -> None:
    mock.get(URL).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_a_body_that_is_not_json_is_a_data_error(mock: respx.MockRouter, make: Callable[..., KolideClient]) -> None:
    mock.get(URL).respond(200, text="<html>login</html>")
    with pytest.raises(VendorDataError, match="not JSON"):
        make().fetch_agents()


def test_a_repeated_cursor_ends_paging_with_a_data_error(
    mock: respx.MockRouter, make: Callable[..., KolideClient]
) -> None:
    mock.get(URL).respond(200, json=page([raw_device(1)], "same"))
    with pytest.raises(VendorDataError, match="repeated a cursor"):
        make().fetch_agents()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_an_auth_error_and_never_retried(
    mock: respx.MockRouter, make: Callable[..., KolideClient], status: int
) -> None:
    body = {"error": "Unauthorized"} if status == 401 else {"error": "Forbidden", "message": f"key {KEY} lacks it"}
    route = mock.get(URL).respond(status, json=body)
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    assert KEY not in caught.value.message
    if status == 403:  # the key echoed in the body is redacted
        assert "***" in caught.value.message


def test_429_waits_the_retry_after_then_continues(
    mock: respx.MockRouter, make: Callable[..., KolideClient], sleep: SimSleep
) -> None:
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "Too Many Requests"}),
            httpx.Response(200, json=page([raw_device(1)])),
        ]
    )
    agents = make().fetch_agents()
    assert len(agents) == 1
    assert sleep.sleeps == [7.0]


def test_429_without_retry_after_backs_off_and_gives_up_as_transient(
    mock: respx.MockRouter, make: Callable[..., KolideClient], sleep: SimSleep
) -> None:
    policy = RetryPolicy(max_attempts=3, budget=100.0, base=1.0, cap=5.0, rate_limited_base=2.0, max_retry_after=30.0)
    route = mock.get(URL).respond(429, json={"error": "Too Many Requests"})
    with pytest.raises(VendorTransientError, match="429"):
        make(retry=policy).fetch_agents()
    assert route.call_count == 3 and len(sleep.sleeps) == 2 and all(s > 0 for s in sleep.sleeps)


def test_a_server_error_mid_paging_fails_the_whole_fetch(
    mock: respx.MockRouter, make: Callable[..., KolideClient]
) -> None:
    policy = RetryPolicy(max_attempts=2, budget=100.0, base=0.1, cap=0.1)
    seen: list[httpx.Request] = []
    cursor_route(
        mock,
        {None: httpx.Response(200, json=page([raw_device(1)], "c2")), "c2": httpx.Response(503, json={"error": "x"})},
        seen,
    )
    with pytest.raises(VendorTransientError, match="503"):
        make(retry=policy).fetch_agents()


def test_verify_fetches_one_device(mock: respx.MockRouter, make: Callable[..., KolideClient]) -> None:
    route = mock.get(URL).respond(200, json=page([raw_device(1)], "more"))
    assert make().verify() == 1
    assert route.call_count == 1 and route.calls[0].request.url.params["per_page"] == "1"


def test_verify_refuses_an_answer_that_is_not_kolide(mock: respx.MockRouter, make: Callable[..., KolideClient]) -> None:
    mock.get(URL).respond(200, json={"data": [{"unexpected": True}]})
    with pytest.raises(VendorError):
        make().verify()


def test_base_url_and_settings() -> None:
    assert normalize_base_url(None) == BASE
    assert normalize_base_url("127.0.0.1:8080/") == "https://127.0.0.1:8080"
    with pytest.raises(ValueError):
        normalize_base_url("ftp://x")
    with pytest.raises(ValueError, match="API key"):
        build({"api_key": " "})
    client = build({"api_key": KEY, "base_url": "http://127.0.0.1:9"})
    try:
        assert client.base_url == "http://127.0.0.1:9" and KEY not in repr(client)
    finally:
        client.close()
    with pytest.raises(ValueError):
        KolideClient(KEY, page_size=101)


def test_spec() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace, SPEC.namespaces) == ("kolide", "Kolide", "kolide", ("kolide",))
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [
        ("api_key", True, True),
        ("base_url", False, False),
    ]
    (state,) = SPEC.attributes
    assert (state.key, state.type, state.values) == (
        "kolide:authState",
        "string",
        ("Good", "Notified", "Will Block", "Blocked"),
    )
    assert state.hints["healthy"] == "Good"
