"""SentinelOneClient against respx: cursor paging, mapping and type checks, retries and errors."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.sentinelone import SPEC, SentinelOneClient, agent_from_sentinelone, normalize_console_url
from tests.fakes.sim_time import SimSleep

CONSOLE = "https://example.sentinelone.net"
URL = f"{CONSOLE}/web/api/v2.1/agents"
TOKEN = "s1-unit-token-abcdef"
EXAMPLE = Path("/work/shared/reference/sentinelone-agent-example.json")


def raw_agent(i: int, **overrides: Any) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "id": str(1550901640146865000 + i),
        "uuid": f"uuid-{i}",
        "computerName": f"host-{i}",
        "serialNumber": f"SN{i:04d}",
        "operationalState": "na",
        "activeThreats": 0,
        "agentVersion": "23.4.2.14",
        "encryptedApplications": True,
        "firewallEnabled": True,
        "infected": False,
        "isActive": True,
        "isDecommissioned": False,
        "lastActiveDate": "2026-11-21T10:00:00.123456Z",
        "updatedAt": "2026-11-21T09:00:00.000000Z",
        "osType": "windows",
        "siteId": "1286405255257023125",
    }
    agent.update(overrides)
    return agent


def page(agents: list[dict[str, Any]], cursor: str | None = None, total: int | None = None) -> dict[str, Any]:
    return {"data": agents, "pagination": {"nextCursor": cursor, "totalItems": total}}


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Iterator[Callable[..., SentinelOneClient]]:
    clients: list[SentinelOneClient] = []

    def factory(**kwargs: Any) -> SentinelOneClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(11))
        client = SentinelOneClient(kwargs.pop("url", CONSOLE), kwargs.pop("api_token", TOKEN), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def cursor_route(
    mock: respx.MockRouter, pages: dict[str | None, httpx.Response], seen: list[httpx.Request] | None = None
) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return pages[request.url.params.get("cursor")]

    return mock.get(URL).mock(side_effect=answer)


# -- paging and mapping ----------------------------------------------------------------------------------


def test_cursor_pages_are_assembled_in_order_with_query_header_and_progress(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient]
) -> None:
    seen: list[httpx.Request] = []
    cursor_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1), raw_agent(2)], "c2", 5)),
            "c2": httpx.Response(200, json=page([raw_agent(3), raw_agent(4)], "c3", 5)),
            "c3": httpx.Response(200, json=page([raw_agent(5)], None, 5)),
        },
        seen,
    )
    progress: list[tuple[int, int | None]] = []
    agents = make().fetch_agents(progress=lambda n, total: progress.append((n, total)))

    assert [a.hostname for a in agents] == [f"host-{i}" for i in range(1, 6)]
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert [r.url.params.get("cursor") for r in seen] == [None, "c2", "c3"]
    for request in seen:
        assert request.url.params["limit"] == "1000"
        assert request.url.params["isDecommissioned"] == "false"
        assert request.headers["Authorization"] == f"ApiToken {TOKEN}"


def test_the_reference_example_agent_maps_as_documented(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient]
) -> None:
    mock.get(URL).respond(200, json=json.loads(EXAMPLE.read_text()))
    progress: list[tuple[int, int | None]] = []
    (agent,) = make().fetch_agents(progress=lambda n, total: progress.append((n, total)))
    assert progress == [(1, 1)]
    assert agent.vendor == "sentinelone"
    assert agent.id == "1550901640146865256"
    assert agent.hostname == "ubuntu"
    assert agent.serial is None  # serialNumber: null is kept as None
    assert dict(agent.attributes) == {
        "sentinelOne:operationalState": "na",
        "sentinelOne:activeThreats": 0,
        "sentinelOne:agentVersion": "21.10.1.6",
        "sentinelOne:encryptedApplications": False,
        "sentinelOne:firewallEnabled": True,
        "sentinelOne:infected": False,
    }
    assert agent.last_seen == datetime(2022, 11, 10, 20, 10, 21, 624510, tzinfo=UTC)
    assert agent.active is False and agent.decommissioned is False


def test_null_fields_are_omitted_and_last_seen_falls_back_to_updated_at() -> None:
    agent = agent_from_sentinelone(
        raw_agent(
            1,
            operationalState=None,
            activeThreats=None,
            agentVersion=None,
            encryptedApplications=None,
            infected=None,
            lastActiveDate=None,
            isActive=None,
            isDecommissioned=None,
        )
    )
    assert dict(agent.attributes) == {"sentinelOne:firewallEnabled": True}
    assert agent.last_seen == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert agent.active is True and agent.decommissioned is False


def test_strings_are_kept_verbatim() -> None:
    agent = agent_from_sentinelone(raw_agent(1, operationalState="auto_fully_disabled", agentVersion="22.3.2.23 EA"))
    assert agent.attributes["sentinelOne:operationalState"] == "auto_fully_disabled"
    assert agent.attributes["sentinelOne:agentVersion"] == "22.3.2.23 EA"


@pytest.mark.parametrize(("given", "expected"), [(3, 3), (2.0, 2), ("3", 3), (" 12 ", 12), (0, 0)])
def test_active_threats_accepts_whole_numbers(given: Any, expected: int) -> None:
    value = agent_from_sentinelone(raw_agent(1, activeThreats=given)).attributes["sentinelOne:activeThreats"]
    assert value == expected and type(value) is int


@pytest.mark.parametrize("given", ["3 threats", "", 2.5, -1, True, [1], 2**53])
def test_active_threats_rejects_anything_else(given: Any) -> None:
    with pytest.raises(VendorDataError, match="activeThreats"):
        agent_from_sentinelone(raw_agent(1, activeThreats=given))


@pytest.mark.parametrize(
    "field", ["encryptedApplications", "firewallEnabled", "infected", "isActive", "isDecommissioned"]
)
@pytest.mark.parametrize("given", ["true", 1, 0])
def test_boolean_fields_must_be_booleans(field: str, given: Any) -> None:
    with pytest.raises(VendorDataError, match=field):
        agent_from_sentinelone(raw_agent(1, **{field: given}))


def test_other_malformed_agents_are_refused() -> None:
    with pytest.raises(VendorDataError, match="not an object"):
        agent_from_sentinelone(None)
    with pytest.raises(VendorDataError, match="no usable id"):
        agent_from_sentinelone(raw_agent(1, id=""))
    with pytest.raises(VendorDataError, match="serialNumber"):
        agent_from_sentinelone(raw_agent(1, serialNumber=["a"]))
    with pytest.raises(VendorDataError, match="lastActiveDate"):
        agent_from_sentinelone(raw_agent(1, lastActiveDate="last tuesday"))


@pytest.mark.parametrize(
    "body",
    [
        {"pagination": {"nextCursor": None}},
        {"data": None},
        {"data": [raw_agent(1), 7]},
        {"data": [], "pagination": {"nextCursor": 12}},
        "just a string",
    ],
)
def test_malformed_pages_raise_data_error(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient], body: Any
) -> None:
    mock.get(URL).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_repeated_cursor_is_a_data_error(mock: respx.MockRouter, make: Callable[..., SentinelOneClient]) -> None:
    cursor_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1)], "same", 2)),
            "same": httpx.Response(200, json=page([raw_agent(2)], "same", 2)),
        },
    )
    with pytest.raises(VendorDataError, match="repeated a cursor"):
        make().fetch_agents()


def test_missing_total_gives_progress_without_total(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient]
) -> None:
    mock.get(URL).respond(200, json={"data": [raw_agent(1)], "pagination": {"nextCursor": None}})
    progress: list[tuple[int, int | None]] = []
    make().fetch_agents(progress=lambda n, total: progress.append((n, total)))
    assert progress == [(1, None)]


# -- retries and errors -------------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient], sleep: SimSleep
) -> None:
    route = mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "4"}),
            httpx.Response(200, json=page([raw_agent(1)], None, 1)),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps == [4.0]
    assert route.call_count == 2


def test_429_without_retry_after_backs_off(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient], sleep: SimSleep
) -> None:
    mock.get(URL).mock(
        side_effect=[httpx.Response(429), httpx.Response(429), httpx.Response(200, json=page([], None, 0))]
    )
    assert make().fetch_agents() == []
    assert len(sleep.sleeps) == 2
    assert 1.0 <= sleep.sleeps[0] <= 2.0 and 2.0 <= sleep.sleeps[1] <= 4.0


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_surface_the_error_title_without_the_token(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient], status: int
) -> None:
    body = {"errors": [{"code": 4010010, "detail": f"token {TOKEN} expired", "title": "Authentication Failed"}]}
    route = mock.get(URL).respond(status, json=body)
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    assert "Authentication Failed: token *** expired" in caught.value.message
    assert TOKEN not in caught.value.message and TOKEN not in str(caught.value)


def test_error_detail_of_a_bad_request_is_surfaced(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient]
) -> None:
    body = {"errors": [{"code": 4000010, "detail": "limit: must be at most 1000", "title": "Validation Error"}]}
    mock.get(URL).respond(400, json=body)
    with pytest.raises(VendorError) as caught:
        make().fetch_agents()
    assert not isinstance(caught.value, VendorAuthError | VendorTransientError | VendorDataError)
    assert "HTTP 400 Bad Request: Validation Error: limit: must be at most 1000" in caught.value.message


def test_5xx_mid_paging_exhausts_retries_and_returns_nothing(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient], sleep: SimSleep
) -> None:
    seen: list[httpx.Request] = []
    cursor_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1)], "c2", 3)),
            "c2": httpx.Response(502, text="<html>bad gateway</html>"),
        },
        seen,
    )
    with pytest.raises(VendorTransientError) as caught:
        make().fetch_agents()
    assert len(seen) == 6 and len(sleep.sleeps) == 4
    assert "HTTP 502 Bad Gateway (gave up after 5 attempts)" in caught.value.message


def test_timeouts_are_retried(mock: respx.MockRouter, make: Callable[..., SentinelOneClient], sleep: SimSleep) -> None:
    route = mock.get(URL).mock(
        side_effect=[
            httpx.ReadTimeout("timed out"),
            httpx.RemoteProtocolError("server disconnected"),
            httpx.Response(200, json=page([raw_agent(1)], None, 1)),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert route.call_count == 3 and len(sleep.sleeps) == 2


def test_timeouts_exhausted_raise_transient(mock: respx.MockRouter, make: Callable[..., SentinelOneClient]) -> None:
    mock.get(URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(VendorTransientError, match="did not answer after 5 attempts"):
        make().fetch_agents()


# -- URL, spec -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://example.sentinelone.net", CONSOLE),
        ("https://example.sentinelone.net/", CONSOLE),
        ("example.sentinelone.net", CONSOLE),
        ("https://example.sentinelone.net/web/api/v2.1/", CONSOLE),
        ("https://example.sentinelone.net/web/api/v2.1/agents", CONSOLE),
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999"),
    ],
)
def test_console_url_normalization(given: str, expected: str) -> None:
    assert normalize_console_url(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", "ftp://example.sentinelone.net", "https://u:p@example.sentinelone.net"])
def test_bad_console_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="console URL"):
        normalize_console_url(bad)


def test_console_url_with_api_suffix_still_reaches_the_agents_path(
    mock: respx.MockRouter, make: Callable[..., SentinelOneClient]
) -> None:
    route = mock.get(URL).respond(200, json=page([raw_agent(1)], None, 1))
    make(url=f"{CONSOLE}/web/api/v2.1").fetch_agents()
    assert route.call_count == 1


def test_spec_describes_fields_and_attributes() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace) == ("sentinelone", "SentinelOne", "sentinelOne")
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [("url", False, True), ("api_token", True, True)]
    types = {a.key: a.type for a in SPEC.attributes}
    assert types == {
        "sentinelOne:operationalState": "string",
        "sentinelOne:activeThreats": "number",
        "sentinelOne:agentVersion": "string",
        "sentinelOne:encryptedApplications": "boolean",
        "sentinelOne:firewallEnabled": "boolean",
        "sentinelOne:infected": "boolean",
    }
    attributes = {a.key: a for a in SPEC.attributes}
    assert attributes["sentinelOne:agentVersion"].version
    assert "na" in attributes["sentinelOne:operationalState"].values
    assert "db_corruption" in attributes["sentinelOne:operationalState"].values
    assert all(a.description for a in SPEC.attributes)


def test_spec_build(mock: respx.MockRouter) -> None:
    client = SPEC.build({"url": "example.sentinelone.net/", "api_token": f" {TOKEN} "})
    try:
        assert isinstance(client, SentinelOneClient)
        assert client.url == CONSOLE
        assert TOKEN not in repr(client)
        route = mock.get(URL).respond(200, json=page([], None, 0))
        assert client.fetch_agents() == []
        assert route.calls.last.request.headers["Authorization"] == f"ApiToken {TOKEN}"
    finally:
        client.close()
    with pytest.raises(ValueError, match="API token"):
        SPEC.build({"url": CONSOLE, "api_token": ""})
    with pytest.raises(ValueError, match="console URL"):
        SPEC.build({"api_token": TOKEN})
