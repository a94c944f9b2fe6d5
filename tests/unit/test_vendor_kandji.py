"""KandjiClient against respx: offset paging, mapping (null → unset), Kong's 429 headers, errors, verify."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.kandji import SPEC, KandjiClient, agent_from_kandji, next_offset, normalize_api_url
from tests.fakes.sim_time import SimSleep

API = "https://example.api.kandji.io"
URL = f"{API}/api/v1/prism/device_information"
TOKEN = "kandji-unit-token-abcdef"


def raw_device(i: int, **overrides: Any) -> dict[str, Any]:
    device: dict[str, Any] = {
        "device_id": f"00008347-0695-4145-b0dc-{i:012x}",
        "device__name": f"host-{i}",
        "device__family": "Mac",
        "serial_number": f"SN{i:04d}",
        "os_version": "15.6.1",
        "mdm_enabled": True,
        "agent_installed": True,
        "agent_version": "5.1.2",
        "last_checkin": "2026-11-30T08:50:12.120000+00:00",
        "last_checkin_mdm": "2026-11-30T08:40:00.000000+00:00",
        "last_checkin_agent": "2026-11-30T08:50:12.120000+00:00",
        "device__user_email": f"user{i}@example.com",
    }
    device.update(overrides)
    return device


def page(devices: list[dict[str, Any]], offset: int, total: int | None, limit: int = 300) -> dict[str, Any]:
    return {"cursor": None, "data": devices, "limit": limit, "offset": offset, "total": total}


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Iterator[Callable[..., KandjiClient]]:
    clients: list[KandjiClient] = []

    def factory(**kwargs: Any) -> KandjiClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(7))
        client = KandjiClient(kwargs.pop("api_url", API), kwargs.pop("api_token", TOKEN), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def offset_route(
    mock: respx.MockRouter, pages: dict[str, httpx.Response], seen: list[httpx.Request] | None = None
) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return pages[request.url.params["offset"]]

    return mock.get(URL).mock(side_effect=answer)


# -- paging and mapping ----------------------------------------------------------------------------------


def test_offset_pages_are_assembled_in_order_with_query_header_and_progress(
    mock: respx.MockRouter, make: Callable[..., KandjiClient]
) -> None:
    seen: list[httpx.Request] = []
    offset_route(
        mock,
        {
            "0": httpx.Response(200, json=page([raw_device(1), raw_device(2)], 0, 5, 2)),
            "2": httpx.Response(200, json=page([raw_device(3), raw_device(4)], 2, 5, 2)),
            "4": httpx.Response(200, json=page([raw_device(5)], 4, 5, 2)),
        },
        seen,
    )
    progress: list[tuple[int, int | None]] = []
    agents = make(page_size=2).fetch_agents(progress=lambda n, total: progress.append((n, total)))

    assert [a.hostname for a in agents] == [f"host-{i}" for i in range(1, 6)]
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert [r.url.params["offset"] for r in seen] == ["0", "2", "4"]
    for request in seen:
        assert request.url.params["limit"] == "2"
        assert request.url.params["sort_by"] == "device_id"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_server_capping_the_limit_is_followed_by_what_it_returned(
    mock: respx.MockRouter, make: Callable[..., KandjiClient]
) -> None:
    """Asked for 300 it may return fewer: the next offset is where this page really ended."""
    seen: list[httpx.Request] = []
    offset_route(
        mock,
        {
            "0": httpx.Response(200, json=page([raw_device(1), raw_device(2)], 0, 3)),
            "2": httpx.Response(200, json=page([raw_device(3)], 2, 3)),
        },
        seen,
    )
    assert len(make().fetch_agents()) == 3
    assert [r.url.params["offset"] for r in seen] == ["0", "2"]
    assert seen[0].url.params["limit"] == "300"


def test_without_total_paging_ends_on_a_short_page(mock: respx.MockRouter, make: Callable[..., KandjiClient]) -> None:
    offset_route(
        mock,
        {
            "0": httpx.Response(200, json=page([raw_device(1), raw_device(2)], 0, None, 2)),
            "2": httpx.Response(200, json=page([raw_device(3)], 2, None, 2)),
        },
    )
    progress: list[tuple[int, int | None]] = []
    agents = make(page_size=2).fetch_agents(progress=lambda n, total: progress.append((n, total)))
    assert len(agents) == 3 and progress == [(2, None), (3, None)]


def test_the_reference_sample_maps_as_documented() -> None:
    """The two devices of VENDORS-MORE.md §4 (a Mac with the agent, an iPad without one)."""
    mac = agent_from_kandji(
        {
            "device_id": "00008347-0695-4145-b0dc-ca800a1332f9",
            "device__name": "ana-mbp",
            "device__family": "Mac",
            "serial_number": "C02ZK1ABMD6T",
            "os_version": "15.6.1",
            "mdm_enabled": True,
            "agent_installed": True,
            "agent_version": "5.1.2",
            "last_checkin": "2026-11-30T08:50:12.120000+00:00",
            "device__user_email": "ana@example.com",
        }
    )
    ipad = agent_from_kandji(
        {
            "device_id": "6c1d2e3f-4a5b-4c6d-9e8f-0a1b2c3d4e5f",
            "device__name": "Bo's iPad",
            "device__family": "iPad",
            "serial_number": "DMPXK2ZZQ1GC",
            "os_version": "18.6",
            "mdm_enabled": True,
            "agent_installed": None,
            "agent_version": None,
            "last_checkin": "2026-11-29T18:02:44.000000+00:00",
            "device__user_email": "bo@example.com",
        }
    )
    assert (mac.vendor, mac.id, mac.hostname, mac.serial) == (
        "kandji",
        "00008347-0695-4145-b0dc-ca800a1332f9",
        "ana-mbp",
        "C02ZK1ABMD6T",
    )
    assert dict(mac.attributes) == {"kandji:mdmEnabled": True, "kandji:agentInstalled": True}
    assert mac.last_seen == datetime(2026, 11, 30, 8, 50, 12, 120000, tzinfo=UTC)
    assert mac.mac_addresses == ()  # the Prism listing has no MACs
    assert dict(ipad.attributes) == {"kandji:mdmEnabled": True}  # null agent: unset, never false
    assert ipad.active and not ipad.decommissioned


def test_false_is_kept_and_null_is_unset() -> None:
    agent = agent_from_kandji(raw_device(1, mdm_enabled=False, agent_installed=None))
    assert dict(agent.attributes) == {"kandji:mdmEnabled": False}
    assert dict(agent_from_kandji(raw_device(2, mdm_enabled=None, agent_installed=None)).attributes) == {}


def test_last_seen_falls_back_to_the_latest_mdm_or_agent_checkin() -> None:
    agent = agent_from_kandji(
        raw_device(1, last_checkin=None, last_checkin_mdm="2026-11-30T09:00:00Z", last_checkin_agent=None)
    )
    assert agent.last_seen == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    none = agent_from_kandji(raw_device(1, last_checkin=None, last_checkin_mdm=None, last_checkin_agent=None))
    assert none.last_seen is None


def test_null_serial_is_kept_as_none() -> None:
    assert agent_from_kandji(raw_device(1, serial_number=None)).serial is None


@pytest.mark.parametrize("field", ["mdm_enabled", "agent_installed"])
@pytest.mark.parametrize("given", ["true", 1, 0, "false"])
def test_boolean_fields_must_be_booleans(field: str, given: Any) -> None:
    with pytest.raises(VendorDataError, match=field):
        agent_from_kandji(raw_device(1, **{field: given}))


def test_other_malformed_devices_are_refused() -> None:
    with pytest.raises(VendorDataError, match="not an object"):
        agent_from_kandji(["device"])
    with pytest.raises(VendorDataError, match="no usable device_id"):
        agent_from_kandji(raw_device(1, device_id=""))
    with pytest.raises(VendorDataError, match="no usable device_id"):
        agent_from_kandji(raw_device(1, device_id=17))
    with pytest.raises(VendorDataError, match="serial_number"):
        agent_from_kandji(raw_device(1, serial_number=12345))
    with pytest.raises(VendorDataError, match="last_checkin"):
        agent_from_kandji(raw_device(1, last_checkin="yesterday"))


@pytest.mark.parametrize(
    "body",
    [
        [raw_device(1)],  # the /api/v1/devices bare-array shape is not this endpoint's
        {"data": None, "total": 1},
        {"data": [raw_device(1), 7], "total": 2},
        {"data": [], "total": "many"},
        "just a string",
    ],
)
def test_malformed_pages_raise_data_error(mock: respx.MockRouter, make: Callable[..., KandjiClient], body: Any) -> None:
    mock.get(URL).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_an_empty_page_before_the_total_is_a_data_error(
    mock: respx.MockRouter, make: Callable[..., KandjiClient]
) -> None:
    offset_route(
        mock,
        {
            "0": httpx.Response(200, json=page([raw_device(1)], 0, 5)),
            "1": httpx.Response(200, json=page([], 1, 5)),
        },
    )
    with pytest.raises(VendorDataError, match="empty page at offset 1 of 5"):
        make().fetch_agents()


def test_next_offset() -> None:
    assert next_offset(0, 300, 301, 300) == 300
    assert next_offset(300, 1, 301, 300) is None
    assert next_offset(0, 0, 0, 300) is None
    assert next_offset(0, 300, None, 300) == 300
    assert next_offset(300, 5, None, 300) is None


# -- rate limits, retries and errors -----------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(
    mock: respx.MockRouter, make: Callable[..., KandjiClient], sleep: SimSleep
) -> None:
    kong = {"Retry-After": "3", "RateLimit-Reset": "3", "X-RateLimit-Remaining-Second": "0"}
    route = mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers=kong, json={"message": "API rate limit exceeded"}),
            httpx.Response(200, json=page([raw_device(1)], 0, 1)),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps == [3.0] and route.call_count == 2


def test_429_with_only_ratelimit_reset_waits_that_long(
    mock: respx.MockRouter, make: Callable[..., KandjiClient], sleep: SimSleep
) -> None:
    kong = {"RateLimit-Reset": "7", "X-RateLimit-Remaining-Hour": "0"}
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers=kong, json={"message": "API rate limit exceeded"}),
            httpx.Response(200, json=page([raw_device(1)], 0, 1)),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps == [7.0]


def test_an_hourly_limit_reset_too_far_away_fails_transiently_at_once(
    mock: respx.MockRouter, make: Callable[..., KandjiClient], sleep: SimSleep
) -> None:
    route = mock.get(URL).respond(429, headers={"RateLimit-Reset": "1800"}, json={"message": "API rate limit exceeded"})
    with pytest.raises(VendorTransientError, match="API rate limit exceeded"):
        make().fetch_agents()
    assert route.call_count == 1 and sleep.sleeps == []


def test_the_client_limits_itself_to_50_requests_a_second(
    mock: respx.MockRouter, make: Callable[..., KandjiClient]
) -> None:
    now = [0.0]
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pages = {str(i): httpx.Response(200, json=page([raw_device(i)], i, 60, 1)) for i in range(60)}
    offset_route(mock, pages)
    client = make(page_size=1, sleep=fake_sleep, clock=lambda: now[0])
    assert len(client.fetch_agents()) == 60
    assert waits == [pytest.approx(1.05)]  # the 51st request waited for the first 50 to leave the window


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_raise_auth_error_without_the_token(
    mock: respx.MockRouter, make: Callable[..., KandjiClient], status: int
) -> None:
    route = mock.get(URL).respond(status, json={"detail": f"Invalid token {TOKEN}."})
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    assert "Invalid token ***." in caught.value.message and TOKEN not in str(caught.value)


def test_5xx_mid_paging_exhausts_retries_and_returns_nothing(
    mock: respx.MockRouter, make: Callable[..., KandjiClient], sleep: SimSleep
) -> None:
    seen: list[httpx.Request] = []
    offset_route(
        mock,
        {
            "0": httpx.Response(200, json=page([raw_device(1)], 0, 3, 1)),
            "1": httpx.Response(503, text="upstream connect error"),
        },
        seen,
    )
    with pytest.raises(VendorTransientError, match="HTTP 503"):
        make(page_size=1).fetch_agents()
    assert len(seen) == 6 and len(sleep.sleeps) == 4


def test_not_found_is_a_plain_vendor_error(mock: respx.MockRouter, make: Callable[..., KandjiClient]) -> None:
    mock.get(URL).respond(404, json={"detail": "Not found."})
    with pytest.raises(VendorError) as caught:
        make().fetch_agents()
    assert not isinstance(caught.value, VendorAuthError | VendorTransientError | VendorDataError)
    assert "HTTP 404" in caught.value.message and "Not found." in caught.value.message


# -- verify ----------------------------------------------------------------------------------------------------


def test_verify_fetches_one_device(mock: respx.MockRouter, make: Callable[..., KandjiClient]) -> None:
    route = mock.get(URL).respond(200, json=page([raw_device(1)], 0, 40, 1))
    assert make().verify() == 1
    request = route.calls.last.request
    assert (request.url.params["limit"], request.url.params["offset"]) == ("1", "0")
    assert route.call_count == 1


def test_verify_refuses_something_that_is_not_the_api(
    mock: respx.MockRouter, make: Callable[..., KandjiClient]
) -> None:
    mock.get(URL).respond(200, json={"data": [{"id": 1}], "total": 1})
    with pytest.raises(VendorDataError):
        make().verify()
    mock.get(URL).respond(401, json={"detail": "Incorrect authentication credentials."})
    with pytest.raises(VendorAuthError):
        make().verify()


# -- URL, spec ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (API, API),
        (f"{API}/", API),
        ("example.api.kandji.io", API),
        (f"{API}/api/v1/", API),
        (f"{API}/api/v1/prism/device_information", API),
        ("https://example.api.eu.iru.com", "https://example.api.eu.iru.com"),
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999"),
    ],
)
def test_api_url_normalization(given: str, expected: str) -> None:
    assert normalize_api_url(given) == expected


@pytest.mark.parametrize("bad", ["", "  ", "ftp://example.api.kandji.io", "https://u:p@example.api.kandji.io"])
def test_bad_api_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="API URL"):
        normalize_api_url(bad)


def test_spec_describes_fields_and_attributes() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace) == ("kandji", "Kandji", "kandji")
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [
        ("api_url", False, True),
        ("api_token", True, True),
    ]
    assert {a.key: a.type for a in SPEC.attributes} == {
        "kandji:mdmEnabled": "boolean",
        "kandji:agentInstalled": "boolean",
    }
    assert all(a.description for a in SPEC.attributes)


def test_spec_build(mock: respx.MockRouter) -> None:
    client = SPEC.build({"api_url": "example.api.kandji.io/", "api_token": f" {TOKEN} "})
    try:
        assert isinstance(client, KandjiClient)
        assert client.api_url == API and TOKEN not in repr(client)
        route = mock.get(URL).respond(200, json=page([], 0, 0))
        assert client.fetch_agents() == []
        assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    finally:
        client.close()
    with pytest.raises(ValueError, match="API token"):
        SPEC.build({"api_url": API, "api_token": ""})
    with pytest.raises(ValueError, match="API URL"):
        SPEC.build({"api_token": TOKEN})
