"""HuntressClient against respx: paging, mapping, retries, rate limiting and errors — on simulated time."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.core.http import RetryPolicy
from app.vendors._http import SlidingWindowLimiter, VendorHttp, redact
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.huntress import (
    DEFAULT_BASE_URL,
    RATE_LIMIT,
    RATE_WINDOW,
    SPEC,
    HuntressClient,
    agent_from_huntress,
    normalize_base_url,
)
from app.vendors.registry import vendors

KEY = "hk_unit_key_1234"
SECRET = "hs_unit_secret_5678"
URL = f"{DEFAULT_BASE_URL}/v1/agents"


class SimTime:
    """A monotonic clock that only moves when slept on (or told to), recording every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def raw_agent(i: int, **overrides: Any) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "id": i,
        "hostname": f"host-{i}",
        "serial_number": f"SN{i:04d}",
        "platform": "windows",
        "defender_status": "Protected",
        "defender_policy_status": "Compliant",
        "firewall_status": "Enabled",
        "organization_id": 7,
        "last_callback_at": "2026-11-21T10:00:00Z",
        "updated_at": "2026-11-21T09:00:00Z",
    }
    agent.update(overrides)
    return agent


def page(agents: list[dict[str, Any]], next_token: str | None = None) -> dict[str, Any]:
    pagination: dict[str, Any] = {}
    if next_token is not None:
        pagination = {"next_page_token": next_token, "next_page_url": f"{URL}?page_token={next_token}&limit=500"}
    return {"agents": agents, "pagination": pagination}


@pytest.fixture
def sim() -> SimTime:
    return SimTime()


@pytest.fixture
def make(sim: SimTime) -> Iterator[Callable[..., HuntressClient]]:
    clients: list[HuntressClient] = []

    def factory(**kwargs: Any) -> HuntressClient:
        kwargs.setdefault("sleep", sim.sleep)
        kwargs.setdefault("clock", sim)
        kwargs.setdefault("rng", random.Random(7))
        client = HuntressClient(kwargs.pop("api_key", KEY), kwargs.pop("api_secret", SECRET), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def paged_route(
    mock: respx.MockRouter, pages: dict[str | None, httpx.Response], seen: list[httpx.Request] | None = None
) -> respx.Route:
    """Answer by ``page_token`` (``None`` for the first page)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return pages[request.url.params.get("page_token")]

    return mock.get(URL).mock(side_effect=answer)


# -- paging and mapping ----------------------------------------------------------------------------------


def test_pages_are_assembled_in_order_with_auth_limit_and_progress(
    mock: respx.MockRouter, make: Callable[..., HuntressClient]
) -> None:
    seen: list[httpx.Request] = []
    paged_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1), raw_agent(2)], "tok2")),
            "tok2": httpx.Response(200, json=page([raw_agent(3), raw_agent(4)], "tok3")),
            "tok3": httpx.Response(200, json=page([raw_agent(5)])),
        },
        seen,
    )
    calls: list[tuple[int, int | None]] = []
    agents = make().fetch_agents(progress=lambda n, total: calls.append((n, total)))

    assert [a.id for a in agents] == ["1", "2", "3", "4", "5"]
    assert calls == [(2, None), (4, None), (5, None)]
    assert [r.url.params.get("page_token") for r in seen] == [None, "tok2", "tok3"]
    expected_auth = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    for request in seen:
        assert request.url.params["limit"] == "500"
        assert "organization_id" not in request.url.params
        assert request.headers["Authorization"] == expected_auth


def test_empty_next_page_token_ends_paging(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    route = mock.get(URL).respond(200, json={"agents": [raw_agent(1)], "pagination": {"next_page_token": ""}})
    assert [a.id for a in make().fetch_agents()] == ["1"]
    assert route.call_count == 1


def test_agent_mapping_keeps_strings_verbatim_and_omits_nulls() -> None:
    agent = agent_from_huntress(
        raw_agent(
            42,
            defender_status="Unhealthy",
            defender_policy_status="Non Compliant",
            firewall_status="Pending Isolation",
            serial_number=None,
        )
    )
    assert agent.vendor == "huntress"
    assert agent.id == "42"
    assert agent.hostname == "host-42"
    assert agent.serial is None
    assert dict(agent.attributes) == {
        "huntress:defenderStatus": "Unhealthy",
        "huntress:defenderPolicyStatus": "Non Compliant",
        "huntress:firewallStatus": "Pending Isolation",
    }
    assert agent.last_seen == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert agent.active is True and agent.decommissioned is False

    sparse = raw_agent(43, defender_status=None, defender_policy_status="  ", last_callback_at=None)
    del sparse["firewall_status"]
    mapped = agent_from_huntress(sparse)
    assert dict(mapped.attributes) == {}
    assert mapped.last_seen == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # fell back to updated_at


def test_agent_macs_are_normalised_and_placeholders_dropped() -> None:
    agent = agent_from_huntress(
        raw_agent(7, mac_addresses=["7C:A7:B0:16:2F:78", "00:00:00:00:00:00", "7c-a7-b0-16-2f-78"])
    )
    assert agent.mac_addresses == ("7ca7b0162f78",)
    assert agent_from_huntress(raw_agent(8)).mac_addresses == ()
    with pytest.raises(VendorDataError, match="mac_addresses"):
        agent_from_huntress(raw_agent(9, mac_addresses="7c:a7:b0:16:2f:78"))


def test_agent_mapping_rejects_malformed_agents() -> None:
    with pytest.raises(VendorDataError, match="not an object"):
        agent_from_huntress(["not", "an", "agent"])
    with pytest.raises(VendorDataError, match="no usable id"):
        agent_from_huntress(raw_agent(1, id=None))
    with pytest.raises(VendorDataError, match="no usable id"):
        agent_from_huntress(raw_agent(1, id=True))
    with pytest.raises(VendorDataError, match="defender_status"):
        agent_from_huntress(raw_agent(1, defender_status=3))
    with pytest.raises(VendorDataError, match="serial_number"):
        agent_from_huntress(raw_agent(1, serial_number=12345))
    with pytest.raises(VendorDataError, match="last_callback_at"):
        agent_from_huntress(raw_agent(1, last_callback_at="yesterday"))


@pytest.mark.parametrize(
    "body",
    [
        {"pagination": {}},
        {"agents": {"1": {}}, "pagination": {}},
        {"agents": [raw_agent(1), "oops"], "pagination": {}},
        {"agents": [], "pagination": {"next_page_token": 5}},
        {"agents": [], "pagination": "next"},
        ["not", "an", "object"],
    ],
)
def test_malformed_pages_raise_data_error(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], body: Any
) -> None:
    mock.get(URL).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_body_that_is_not_json_is_a_data_error(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    mock.get(URL).respond(200, text="<html>maintenance</html>")
    with pytest.raises(VendorDataError, match="not JSON"):
        make().fetch_agents()


def test_repeated_page_token_is_a_data_error(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    paged_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1)], "again")),
            "again": httpx.Response(200, json=page([raw_agent(2)], "again")),
        },
    )
    with pytest.raises(VendorDataError, match="repeated a page token"):
        make().fetch_agents()


def test_agent_listed_on_two_pages_is_kept_once(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    paged_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1), raw_agent(2)], "p2")),
            "p2": httpx.Response(200, json=page([raw_agent(2, firewall_status="Isolated"), raw_agent(3)])),
        },
    )
    agents = make().fetch_agents()
    assert [a.id for a in agents] == ["1", "2", "3"]
    assert agents[1].attributes["huntress:firewallStatus"] == "Isolated"


def test_organization_id_is_passed_on_every_page(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    seen: list[httpx.Request] = []
    paged_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1)], "p2")),
            "p2": httpx.Response(200, json=page([raw_agent(2)])),
        },
        seen,
    )
    make(organization_id="42").fetch_agents()
    assert [r.url.params.get("organization_id") for r in seen] == ["42", "42"]


def test_custom_base_url_is_used(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    route = mock.get("https://huntress.example.test/prefix/v1/agents").respond(200, json=page([raw_agent(9)]))
    agents = make(base_url="https://huntress.example.test/prefix/v1/").fetch_agents()
    assert [a.id for a in agents] == ["9"]
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, DEFAULT_BASE_URL),
        ("", DEFAULT_BASE_URL),
        ("https://api.huntress.io/v1", DEFAULT_BASE_URL),
        ("api.huntress.io/", DEFAULT_BASE_URL),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_base_url_normalization(given: str | None, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://api.huntress.io", "https://user:pw@api.huntress.io", "https://"])
def test_bad_base_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        normalize_base_url(bad)


# -- retries and errors -----------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], sim: SimTime
) -> None:
    route = mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "Too Many Requests"}),
            httpx.Response(200, json=page([raw_agent(1)])),
        ]
    )
    assert [a.id for a in make().fetch_agents()] == ["1"]
    assert sim.sleeps == [7.0]
    assert route.call_count == 2


def test_429_without_retry_after_backs_off_exponentially(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], sim: SimTime
) -> None:
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429),
            httpx.Response(429),
            httpx.Response(429),
            httpx.Response(200, json=page([raw_agent(1)])),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert len(sim.sleeps) == 3
    # equal jitter on a 5 s base: [2.5, 5], [5, 10], [10, 20]
    for n, delay in enumerate(sim.sleeps):
        assert 5 * 2**n / 2 <= delay <= 5 * 2**n


def test_retry_after_longer_than_allowed_fails_at_once(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], sim: SimTime
) -> None:
    route = mock.get(URL).respond(429, headers={"Retry-After": "3600"})
    with pytest.raises(VendorTransientError, match="3600s"):
        make().fetch_agents()
    assert route.call_count == 1
    assert sim.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_raise_auth_error_without_retry_or_credentials(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], status: int
) -> None:
    route = mock.get(URL).respond(status, json={"error": f"bad key {KEY}"})
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    message = caught.value.message
    assert str(status) in message
    assert KEY not in message and SECRET not in message
    assert "bad key ***" in message


def test_5xx_in_the_middle_of_paging_exhausts_retries_and_returns_nothing(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], sim: SimTime
) -> None:
    seen: list[httpx.Request] = []
    paged_route(
        mock,
        {
            None: httpx.Response(200, json=page([raw_agent(1)], "p2")),
            "p2": httpx.Response(503, json={"error": "database timeout"}),
        },
        seen,
    )
    progress: list[int] = []
    client = make()
    result: list[Any] | None = None
    with pytest.raises(VendorTransientError) as caught:
        result = client.fetch_agents(progress=lambda n, total: progress.append(n))
    assert result is None
    assert len(seen) == 1 + 5  # first page, then 5 attempts of page 2
    assert len(sim.sleeps) == 4
    assert progress == [1]
    assert "503" in caught.value.message and "database timeout" in caught.value.message
    assert "gave up after 5 attempts" in caught.value.message


def test_timeouts_and_connection_errors_are_retried(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], sim: SimTime
) -> None:
    route = mock.get(URL).mock(
        side_effect=[
            httpx.ReadTimeout("timed out"),
            httpx.ConnectError("connection refused"),
            httpx.Response(200, json=page([raw_agent(1)])),
        ]
    )
    assert [a.id for a in make().fetch_agents()] == ["1"]
    assert route.call_count == 3
    assert len(sim.sleeps) == 2
    assert 0.5 <= sim.sleeps[0] <= 1.0 and 1.0 <= sim.sleeps[1] <= 2.0


def test_timeouts_that_never_end_raise_transient_error(
    mock: respx.MockRouter, make: Callable[..., HuntressClient]
) -> None:
    route = mock.get(URL).mock(side_effect=httpx.ConnectTimeout("timed out"))
    with pytest.raises(VendorTransientError, match="did not answer after 3 attempts"):
        make(retry=RetryPolicy(max_attempts=3)).fetch_agents()
    assert route.call_count == 3


def test_other_client_errors_are_not_retried_and_show_detail(
    mock: respx.MockRouter, make: Callable[..., HuntressClient]
) -> None:
    route = mock.get(URL).respond(400, json={"error": f"limit is invalid for {SECRET}"})
    with pytest.raises(VendorError) as caught:
        make().fetch_agents()
    assert type(caught.value) is VendorError
    assert route.call_count == 1
    assert "limit is invalid" in caught.value.message
    assert SECRET not in caught.value.message


def test_redirects_are_reported_not_followed(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    mock.get(URL).respond(301, headers={"Location": "https://elsewhere.example/v1/agents?x=1"})
    with pytest.raises(VendorError, match=r"redirected to https://elsewhere\.example/v1/agents;"):
        make().fetch_agents()


# -- client-side rate limit ----------------------------------------------------------------------------------


def test_61_pages_make_the_61st_request_wait_for_the_window(
    mock: respx.MockRouter, make: Callable[..., HuntressClient], sim: SimTime
) -> None:
    starts: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        starts.append(sim.now)
        n = int(request.url.params.get("page_token") or 0)
        sim.now += 0.25  # each request takes a quarter second
        return httpx.Response(200, json=page([raw_agent(n)], str(n + 1) if n < 60 else None))

    mock.get(URL).mock(side_effect=answer)
    agents = make().fetch_agents()

    assert len(agents) == 61 and len(starts) == 61
    assert len(sim.sleeps) == 1
    assert starts[59] == pytest.approx(1000.0 + 59 * 0.25)
    assert sim.sleeps[0] == pytest.approx(RATE_WINDOW - 60 * 0.25)
    assert starts[60] == pytest.approx(starts[0] + RATE_WINDOW)
    for i in range(len(starts)):
        assert sum(1 for t in starts if starts[i] <= t < starts[i] + 60.0) <= RATE_LIMIT


def test_limiter_counts_retries_too(mock: respx.MockRouter, sim: SimTime) -> None:
    limiter = SlidingWindowLimiter(2, 10.0, clock=sim, sleep=sim.sleep)
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(200, json=page([raw_agent(1)])),
        ]
    )
    rng = random.Random(1)
    with HuntressClient(KEY, SECRET, sleep=sim.sleep, clock=sim, rng=rng, limiter=limiter) as client:
        assert len(client.fetch_agents()) == 1
    # two backoff sleeps, then the limiter waits for the first start to leave the 10 s window
    assert len(sim.sleeps) == 3
    assert sum(sim.sleeps) == pytest.approx(10.0)


def test_sliding_window_limiter_never_exceeds_its_budget() -> None:
    sim = SimTime()
    limiter = SlidingWindowLimiter(3, 5.0, clock=sim, sleep=sim.sleep)
    rng = random.Random(3)
    starts = []
    for _ in range(40):
        sim.now += rng.choice([0.0, 0.0, 0.5, 1.0, 3.0])
        limiter.acquire()
        starts.append(sim.now)
    for t in starts:
        assert sum(1 for s in starts if t <= s < t + 5.0) <= 3
    assert sim.sleeps, "the budget was exceeded at some point, so the limiter must have waited"


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 60.0)


# -- helpers, spec, registry -----------------------------------------------------------------------------------


def test_redact_hides_every_secret() -> None:
    assert redact("key=abc secret=def abc", ["abc", "def", ""]) == "key=*** secret=*** ***"


def test_vendor_http_does_not_retry_unexpected_http_errors(sim: SimTime) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol("bad scheme")

    client = httpx.Client(transport=httpx.MockTransport(boom))
    http = VendorHttp(client, label="Test", sleep=sim.sleep)
    with pytest.raises(VendorError, match="bad scheme"):
        http.get_json("https://x.example/v1", params={}, headers={})
    assert sim.sleeps == []
    client.close()


def test_registry_finds_both_vendor_specs() -> None:
    found = vendors()
    assert {"huntress", "sentinelone"} <= set(found)
    assert found["huntress"] is SPEC
    assert found["sentinelone"].namespace == "sentinelOne"


def test_spec_describes_fields_and_attributes() -> None:
    assert SPEC.namespace == "huntress"
    assert SPEC.default_base_url == DEFAULT_BASE_URL
    fields = {f.name: f for f in SPEC.fields}
    assert fields["api_key"].secret and fields["api_secret"].secret
    assert not fields["organization_id"].required and not fields["base_url"].required
    attributes = {a.key: a for a in SPEC.attributes}
    assert attributes["huntress:defenderPolicyStatus"].values == (
        "Unknown",
        "Non Compliant",
        "Compliant",
        "Pending",
        "Gpo Conflict",
    )
    assert all(a.type == "string" and a.description and a.key.startswith("huntress:") for a in SPEC.attributes)


def test_spec_build_makes_a_client_sharing_one_limiter_per_account(mock: respx.MockRouter) -> None:
    values = {"api_key": f" {KEY} ", "api_secret": SECRET, "organization_id": "42", "base_url": ""}
    first, second = SPEC.build(values), SPEC.build(dict(values))
    other = SPEC.build({"api_key": "another-key", "api_secret": SECRET})
    try:
        assert isinstance(first, HuntressClient) and isinstance(other, HuntressClient)
        assert isinstance(second, HuntressClient)
        assert first.organization_id == 42 and first.base_url == DEFAULT_BASE_URL
        assert first.limiter is second.limiter
        assert first.limiter is not other.limiter
        assert KEY not in repr(first) and SECRET not in repr(first)
        route = mock.get(URL).respond(200, json=page([]))
        assert first.fetch_agents() == []
        assert route.calls.last.request.headers["Authorization"] == (
            "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        )
    finally:
        for client in (first, second, other):
            client.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api_key": KEY}, "API secret"),
        ({"api_key": "  ", "api_secret": SECRET}, "API key"),
        ({"api_key": KEY, "api_secret": SECRET, "organization_id": "acme"}, "organization id"),
        ({"api_key": KEY, "api_secret": SECRET, "base_url": "ftp://x"}, "base URL"),
    ],
)
def test_spec_build_refuses_incomplete_settings(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        SPEC.build(values)
    assert SECRET not in str(caught.value)


def test_close_only_closes_a_client_it_created() -> None:
    injected = httpx.Client()
    HuntressClient(KEY, SECRET, http_client=injected).close()
    assert not injected.is_closed
    own = HuntressClient(KEY, SECRET)
    own.close()
    assert own._client.is_closed
    injected.close()


def test_huntress_error_body_json_shapes(mock: respx.MockRouter, make: Callable[..., HuntressClient]) -> None:
    mock.get(URL).respond(404, content=json.dumps({"errors": ["Not Found"]}).encode())
    with pytest.raises(VendorError, match="HTTP 404 Not Found: Not Found"):
        make().fetch_agents()
