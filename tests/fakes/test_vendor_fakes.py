"""The real vendor clients against the loopback fakes: paging, filters, auth, injected failures, rate limits."""

from __future__ import annotations

import random
import threading
from typing import Any

import httpx
import pytest

from app.core.http import RetryPolicy
from app.vendors._http import SlidingWindowLimiter
from app.vendors.base import VendorAuthError, VendorDataError, VendorTransientError
from app.vendors.huntress import RATE_WINDOW, HuntressClient
from app.vendors.sentinelone import SentinelOneClient
from tests.fakes.vendors import (
    HUNTRESS_KEY,
    HUNTRESS_SECRET,
    SENTINELONE_TOKEN,
    FakeHuntress,
    FakeSentinelOne,
    default_serial,
    huntress_agent,
    sentinelone_agent,
)


class SimTime:
    """Monotonic seconds shared by a fake and a client; only sleeping moves it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def huntress(fake: FakeHuntress, sim: SimTime | None = None, **kwargs: Any) -> HuntressClient:
    sim = sim or SimTime()
    kwargs.setdefault("sleep", sim.sleep)
    kwargs.setdefault("clock", sim)
    kwargs.setdefault("rng", random.Random(5))
    kwargs.setdefault("timeout", 5.0)
    return HuntressClient(
        kwargs.pop("api_key", HUNTRESS_KEY), kwargs.pop("api_secret", HUNTRESS_SECRET), base_url=fake.url, **kwargs
    )


def sentinelone(fake: FakeSentinelOne, sim: SimTime | None = None, **kwargs: Any) -> SentinelOneClient:
    sim = sim or SimTime()
    kwargs.setdefault("sleep", sim.sleep)
    kwargs.setdefault("rng", random.Random(5))
    kwargs.setdefault("timeout", 5.0)
    return SentinelOneClient(fake.url, kwargs.pop("api_token", SENTINELONE_TOKEN), **kwargs)


# -- agent generators ------------------------------------------------------------------------------------------


def test_agent_generators_are_realistic_and_overridable() -> None:
    agent = huntress_agent(3, defender_policy_status="Non Compliant")
    assert agent["id"] == 4 and agent["serial_number"] == default_serial(3) == "SER0000003"
    assert agent["defender_policy_status"] == "Non Compliant" and agent["platform"] == "windows"
    assert huntress_agent(3, serial=None)["serial_number"] is None
    s1 = sentinelone_agent(3, serial=None, activeThreats=2)
    assert s1["serialNumber"] is None and s1["activeThreats"] == 2 and s1["isDecommissioned"] is False
    assert sentinelone_agent(3)["serialNumber"] == "SER0000003"
    assert huntress_agent(4)["hostname"] != huntress_agent(3)["hostname"]


# -- Huntress ------------------------------------------------------------------------------------------------


def test_huntress_pages_through_every_agent_in_order() -> None:
    agents = [huntress_agent(i) for i in range(1234)]
    with FakeHuntress(agents) as fake, huntress(fake) as client:
        progress: list[int] = []
        fetched = client.fetch_agents(progress=lambda n, total: progress.append(n))
        assert [a.id for a in fetched] == [str(i + 1) for i in range(1234)]
        assert fetched[7].serial == "SER0000007"
        assert fetched[7].attributes["huntress:firewallStatus"] == "Enabled"
        assert progress == [500, 1000, 1234]
        assert fake.requests == 3
        assert [c.params.get("limit") for c in fake.calls] == ["500"] * 3


def test_huntress_organization_filter() -> None:
    agents = [huntress_agent(i, organization_id=7 if i % 3 else 8) for i in range(30)]
    with FakeHuntress(agents) as fake, huntress(fake, organization_id=8, page_size=4) as client:
        fetched = client.fetch_agents()
        assert [a.id for a in fetched] == [str(i + 1) for i in range(0, 30, 3)]
        assert fake.requests == 3
        assert all(c.params["organization_id"] == "8" for c in fake.calls)


def test_huntress_wrong_secret_is_an_auth_error() -> None:
    with FakeHuntress([huntress_agent(1)]) as fake, huntress(fake, api_secret="wrong-secret") as client:
        with pytest.raises(VendorAuthError) as caught:
            client.fetch_agents()
        assert fake.requests == 1 and fake.calls[0].status == 401
        assert "wrong-secret" not in caught.value.message and HUNTRESS_KEY not in caught.value.message


def test_huntress_injected_failures_are_retried_then_succeed() -> None:
    sim = SimTime()
    with FakeHuntress([huntress_agent(i) for i in range(5)]) as fake, huntress(fake, sim, page_size=2) as client:
        fake.fail_next(503, times=2)
        assert len(client.fetch_agents()) == 5
        assert [c.status for c in fake.calls] == [503, 503, 200, 200, 200]
        assert len(sim.sleeps) == 2


def test_huntress_failure_mid_paging_raises_and_returns_nothing() -> None:
    with FakeHuntress([huntress_agent(i) for i in range(5)]) as fake, huntress(fake, page_size=2) as client:

        def break_after_first_page(count: int, total: int | None) -> None:
            if count == 2:
                fake.fail_next(500, times=10)

        with pytest.raises(VendorTransientError, match="gave up after 5 attempts"):
            client.fetch_agents(progress=break_after_first_page)
        assert [c.status for c in fake.calls] == [200] + [500] * 5
        assert fake.calls[-1].params["page_token"]


def test_huntress_malformed_page_is_a_data_error() -> None:
    with FakeHuntress([huntress_agent(1)]) as fake, huntress(fake) as client:
        fake.fail_next(200, body="{not json")
        with pytest.raises(VendorDataError):
            client.fetch_agents()


def test_huntress_stalled_request_times_out_and_is_retried() -> None:
    with FakeHuntress([huntress_agent(1)]) as fake, huntress(fake, timeout=0.2) as client:
        fake.stall_next(0.6)
        assert [a.id for a in client.fetch_agents()] == ["2"]
        assert fake.requests == 2


def test_huntress_client_limiter_keeps_the_fake_from_ever_rate_limiting() -> None:
    sim = SimTime()
    agents = [huntress_agent(i) for i in range(130)]
    with (
        FakeHuntress(agents, rate_limit_per_minute=60, clock=sim) as fake,
        huntress(fake, sim, page_size=1) as client,
    ):
        assert len(client.fetch_agents()) == 130
        assert fake.rate_limited == 0
        assert fake.requests == 130
        starts = [c.at for c in fake.calls]
        assert starts[60] >= starts[0] + 60 and starts[120] >= starts[60] + 60
        assert sim.sleeps == pytest.approx([RATE_WINDOW, RATE_WINDOW])


def test_huntress_429_with_retry_after_from_the_fake_is_waited_out() -> None:
    sim = SimTime()
    unlimited = SlidingWindowLimiter(10**6, 60.0, clock=sim, sleep=sim.sleep)
    with (
        FakeHuntress([huntress_agent(i) for i in range(62)], clock=sim) as fake,
        huntress(fake, sim, page_size=1, limiter=unlimited) as client,
    ):
        assert len(client.fetch_agents()) == 62
        assert fake.rate_limited == 1
        assert [c.status for c in fake.calls].count(429) == 1
        assert sim.sleeps == [60.0]  # Retry-After: the oldest request leaves the window after 60 s


def test_huntress_429_without_retry_after_backs_off_until_admitted() -> None:
    sim = SimTime()
    unlimited = SlidingWindowLimiter(10**6, 60.0, clock=sim, sleep=sim.sleep)
    with (
        FakeHuntress(
            [huntress_agent(i) for i in range(5)],
            rate_limit_per_minute=3,
            rate_limit_window=10.0,
            send_retry_after=False,
            clock=sim,
        ) as fake,
        huntress(fake, sim, page_size=1, limiter=unlimited) as client,
    ):
        assert len(client.fetch_agents()) == 5
        assert fake.rate_limited >= 1
        assert all(s >= 2.5 for s in sim.sleeps)
        assert sum(sim.sleeps) >= 10.0


def test_huntress_persistent_rate_limit_exhausts_retries() -> None:
    sim = SimTime()
    unlimited = SlidingWindowLimiter(10**6, 60.0, clock=sim, sleep=sim.sleep)
    retry = RetryPolicy(max_attempts=2, max_retry_after=1)
    with (
        FakeHuntress([huntress_agent(i) for i in range(3)], rate_limit_per_minute=1, clock=sim) as fake,
        huntress(fake, sim, page_size=1, limiter=unlimited, retry=retry) as client,
        pytest.raises(VendorTransientError, match="HTTP 429 Too Many Requests: Too Many Requests; asked to retry"),
    ):
        client.fetch_agents()
    assert [c.status for c in fake.calls] == [200, 429]
    assert sim.sleeps == []


# -- SentinelOne ------------------------------------------------------------------------------------------------


def test_sentinelone_cursor_paging_skips_decommissioned_and_reports_totals() -> None:
    agents = [sentinelone_agent(i, isDecommissioned=(i % 10 == 0)) for i in range(2500)]
    with FakeSentinelOne(agents) as fake, sentinelone(fake) as client:
        progress: list[tuple[int, int | None]] = []
        fetched = client.fetch_agents(progress=lambda n, total: progress.append((n, total)))
        assert len(fetched) == 2250
        assert all(not a.decommissioned for a in fetched)
        assert progress == [(1000, 2250), (2000, 2250), (2250, 2250)]
        assert fake.requests == 3
        assert all(c.params["isDecommissioned"] == "false" and c.params["limit"] == "1000" for c in fake.calls)


def test_sentinelone_wrong_token_surfaces_the_error_title() -> None:
    with FakeSentinelOne([sentinelone_agent(1)]) as fake, sentinelone(fake, api_token="nope-token") as client:
        with pytest.raises(VendorAuthError, match="Authentication Failed") as caught:
            client.fetch_agents()
        assert "nope-token" not in caught.value.message


def test_sentinelone_injected_429_honours_retry_after() -> None:
    sim = SimTime()
    with FakeSentinelOne([sentinelone_agent(1)]) as fake, sentinelone(fake, sim) as client:
        fake.fail_next(429, retry_after=3)
        assert len(client.fetch_agents()) == 1
        assert sim.sleeps == [3.0]
        assert [c.status for c in fake.calls] == [429, 200]


def test_sentinelone_set_agents_serves_the_new_list() -> None:
    with FakeSentinelOne([sentinelone_agent(i) for i in range(3)]) as fake, sentinelone(fake) as client:
        assert len(client.fetch_agents()) == 3
        fake.set_agents([sentinelone_agent(i, activeThreats=1) for i in range(4)])
        fetched = client.fetch_agents()
        assert len(fetched) == 4 and all(a.attributes["sentinelOne:activeThreats"] == 1 for a in fetched)


def test_fakes_refuse_bad_queries_like_the_real_apis() -> None:
    with FakeHuntress([], rate_limit_per_minute=None) as hfake, FakeSentinelOne([]) as sfake:
        auth = httpx.BasicAuth(HUNTRESS_KEY, HUNTRESS_SECRET)
        headers = {"Authorization": f"ApiToken {SENTINELONE_TOKEN}"}
        with httpx.Client(timeout=5) as http:
            assert http.get(f"{hfake.url}/v1/agents", params={"limit": 501}, auth=auth).status_code == 400
            assert http.get(f"{hfake.url}/v1/agents", params={"page_token": "@@"}, auth=auth).status_code == 400
            assert http.get(f"{hfake.url}/v1/nothing", auth=auth).status_code == 404
            bad = http.get(f"{sfake.url}/web/api/v2.1/agents", params={"limit": 1001}, headers=headers)
            assert bad.status_code == 400 and bad.json()["errors"][0]["title"]
            assert http.get(f"{sfake.url}/web/api/v2.1/agents", params={"cursor": "zz"}, headers=headers).is_error
            unauthorized = http.get(f"{sfake.url}/web/api/v2.1/agents")
            assert unauthorized.status_code == 401
            assert unauthorized.json()["errors"][0]["code"] == 4010010
            ok = http.get(f"{sfake.url}/web/api/v2.1/agents", headers=headers).json()
            assert ok == {"data": [], "pagination": {"nextCursor": None, "totalItems": 0}}


def test_fifty_thousand_agents_through_both_fakes() -> None:
    count = 50_000
    with (
        FakeHuntress([huntress_agent(i) for i in range(count)], rate_limit_per_minute=None) as hfake,
        FakeSentinelOne([sentinelone_agent(i) for i in range(count)]) as sfake,
    ):
        unlimited = SlidingWindowLimiter(10**6, 60.0)
        with huntress(hfake, limiter=unlimited) as hclient, sentinelone(sfake) as sclient:
            hagents = hclient.fetch_agents()
            sagents = sclient.fetch_agents()
        assert len(hagents) == len(sagents) == count
        assert hfake.requests == 100 and sfake.requests == 50
        assert hagents[-1].serial == sagents[-1].serial == default_serial(count - 1)
