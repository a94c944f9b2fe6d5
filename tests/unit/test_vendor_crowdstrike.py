"""CrowdStrikeClient against respx: token lifecycle, scroll paging, details + ZTA join, rate limits and errors."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from app.core.clock import FrozenClock
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.crowdstrike import (
    REGIONS,
    SPEC,
    CrowdStrikeClient,
    agent_from_falcon,
    base_url_for,
    build,
    reported_macs,
)
from tests.fakes.sim_time import Mono, SimSleep

BASE = "https://api.crowdstrike.com"
TOKEN_URL = f"{BASE}/oauth2/token"
SCROLL_URL = f"{BASE}/devices/queries/devices-scroll/v1"
HOSTS_URL = f"{BASE}/devices/entities/devices/v2"
ZTA_URL = f"{BASE}/zero-trust-assessment/entities/assessments/v1"
SECRET = "cs-unit-secret-0123456789"
NOW = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)


def host(i: int, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "device_id": f"{i:032x}",
        "hostname": f"host-{i}",
        "serial_number": f"SN{i:04d}",
        "mac_address": f"a4-83-e7-11-22-{i:02x}",
        "connection_mac_address": f"3C-2C-30-A1-B2-{i:02X}",
        "platform_name": "Mac",
        "last_seen": "2026-11-30T09:12:44Z",
        "status": "normal",
    }
    raw.update(overrides)
    return raw


def zta(i: int, overall: Any = 87, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "aid": f"{i:032x}",
        "cid": "c0ffee00c0ffee00c0ffee00c0ffee00",
        "system_serial_number": f"SN{i:04d}",
        "assessment": {"overall": overall, "os": 92, "sensor_config": 80, "version": "3.6.1"},
        "assessment_items": {"os_signals": [], "sensor_signals": []},
    }
    raw.update(overrides)
    return raw


def scroll(ids: list[str], offset: str, total: int) -> dict[str, Any]:
    return {
        "meta": {"pagination": {"offset": offset, "expires_at": 1767225600000, "total": total, "limit": 2}},
        "resources": ids,
        "errors": [],
    }


def entities(resources: list[Any]) -> dict[str, Any]:
    return {"meta": {"query_time": 0.01}, "errors": [], "resources": resources}


def token(value: str = "tok-1", expires_in: int = 1799) -> httpx.Response:
    return httpx.Response(201, json={"access_token": value, "token_type": "bearer", "expires_in": expires_in})


@pytest.fixture
def mono() -> Mono:
    return Mono(500.0)


@pytest.fixture
def sleep(mono: Mono) -> SimSleep:
    return SimSleep(mono)


@pytest.fixture
def make(sleep: SimSleep, mono: Mono) -> Iterator[Callable[..., CrowdStrikeClient]]:
    clients: list[CrowdStrikeClient] = []

    def factory(**kwargs: Any) -> CrowdStrikeClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(5))
        kwargs.setdefault("clock", mono)
        kwargs.setdefault("wall_clock", FrozenClock(NOW))
        kwargs.setdefault("page_size", 2)
        client = CrowdStrikeClient(kwargs.pop("client_id", "cid"), kwargs.pop("client_secret", SECRET), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def details_by_ids(request: httpx.Request, table: dict[str, dict[str, Any]]) -> httpx.Response:
    """Entities of the ids of a GET query string or a POST JSON body, as CrowdStrike answers either form."""
    ids = json.loads(request.content)["ids"] if request.method == "POST" else request.url.params.get_list("ids")
    found = [table[i] for i in ids if i in table]
    return httpx.Response(200 if found else 404, json=entities(found))


def serve_all(mock: respx.MockRouter, hosts: list[dict[str, Any]], scores: list[dict[str, Any]]) -> None:
    by_id = {h["device_id"]: h for h in hosts}
    by_aid = {z["aid"]: z for z in scores}
    ids = [h["device_id"] for h in hosts]
    mock.post(TOKEN_URL).mock(return_value=token())

    def scroll_page(request: httpx.Request) -> httpx.Response:
        offset = request.url.params.get("offset")
        start = 0 if offset is None else int(offset.removeprefix("tok"))
        step = min(int(request.url.params["limit"]), 2)
        chunk = ids[start : start + step]
        nxt = f"tok{start + step}" if start + step < len(ids) else ""
        return httpx.Response(200, json=scroll(chunk, nxt, len(ids)))

    mock.get(SCROLL_URL).mock(side_effect=scroll_page)
    mock.post(HOSTS_URL).mock(side_effect=lambda r: details_by_ids(r, by_id))
    mock.get(ZTA_URL).mock(side_effect=lambda r: details_by_ids(r, by_aid))


def test_pages_join_details_and_scores(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    hosts = [host(i) for i in range(5)]
    serve_all(mock, hosts, [zta(0, 87), zta(1, 54), zta(4, None)])
    progress: list[tuple[int, int | None]] = []
    agents = make().fetch_agents(lambda n, t: progress.append((n, t)))
    assert [a.id for a in agents] == [h["device_id"] for h in hosts]
    assert agents[0].attributes == {"falcon:ztaScore": 87}
    assert agents[1].attributes == {"falcon:ztaScore": 54}
    assert agents[2].attributes == {} and agents[4].attributes == {}  # no assessment / overall null: no score, not 0
    assert agents[0].serial == "SN0000" and agents[0].hostname == "host-0"
    assert agents[0].mac_addresses == ("a483e7112200", "3c2c30a1b200")
    assert agents[0].last_seen == datetime(2026, 11, 30, 9, 12, 44, tzinfo=UTC)
    assert progress == [(2, 5), (4, 5), (5, 5)]
    offsets = [r.request.url.params.get("offset") for r in mock.routes[1].calls]  # type: ignore[index]
    assert offsets == [None, "tok2", "tok4"]


def test_details_are_posted_in_batches_of_5000_and_scores_fetched_by_100(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]
) -> None:
    hosts = [host(i) for i in range(5002)]
    serve_all(mock, hosts, [zta(0, 87), zta(5001, 31)])
    ids = [h["device_id"] for h in hosts]
    mock.get(SCROLL_URL).mock(return_value=httpx.Response(200, json=scroll(ids, "", len(ids))))
    agents = make(page_size=5002).fetch_agents()
    assert [a.id for a in agents] == ids
    assert agents[0].attributes == {"falcon:ztaScore": 87} and agents[5001].attributes == {"falcon:ztaScore": 31}
    posts = [c.request for c in mock.routes[2].calls]  # type: ignore[index]
    assert [r.method for r in posts] == ["POST", "POST"]
    assert [json.loads(r.content) for r in posts] == [{"ids": ids[:5000]}, {"ids": ids[5000:]}]
    assert all(r.headers["Content-Type"] == "application/json" and not r.url.query for r in posts)
    assert all(r.headers["Authorization"] == "Bearer tok-1" for r in posts)
    scores = [c.request.url.params.get_list("ids") for c in mock.routes[3].calls]  # type: ignore[index]
    assert len(scores) == 51 and max(len(batch) for batch in scores) == 100
    asked = [i for batch in scores for i in batch]
    assert sorted(asked) == sorted(ids) and len(set(asked)) == len(ids)  # each id once (lookups run side by side)


def test_assessment_lookups_run_side_by_side_and_one_failing_fails_the_listing(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]
) -> None:
    """Four lookups are in flight at once (each waits here until four have arrived: one after another would
    time out), and a lookup refused with 500 after its retries fails the whole listing."""
    hosts = [host(i) for i in range(800)]
    serve_all(mock, hosts, [zta(0, 87)])
    ids = [h["device_id"] for h in hosts]
    mock.get(SCROLL_URL).mock(return_value=httpx.Response(200, json=scroll(ids, "", len(ids))))
    arrived = threading.Barrier(4, timeout=10)
    assessments = mock.routes[3].side_effect  # type: ignore[index]

    def lookup(request: httpx.Request) -> httpx.Response:
        if request.url.params.get_list("ids")[0] in (ids[100], ids[200], ids[300], ids[400]):
            arrived.wait()
        return assessments(request)

    mock.routes[3].side_effect = lookup  # type: ignore[index]
    agents = make(page_size=800).fetch_agents()
    assert [a.id for a in agents] == ids and agents[0].attributes == {"falcon:ztaScore": 87}

    def failing(request: httpx.Request) -> httpx.Response:
        if request.url.params.get_list("ids")[0] == ids[500]:
            return httpx.Response(500, json={"errors": [{"code": 500, "message": "internal error"}]})
        return assessments(request)

    mock.routes[3].side_effect = failing  # type: ignore[index]
    with pytest.raises(VendorTransientError, match="500"):
        make(page_size=800, max_in_flight=4).fetch_agents()


def test_refused_details_post_names_the_method(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    refusal = {"errors": [{"code": 400, "message": "too many ids: at most 5000"}]}
    mock.post(HOSTS_URL).mock(return_value=httpx.Response(400, json=refusal))
    with pytest.raises(VendorError, match=r"POST /devices/entities/devices/v2 failed: .*at most 5000") as err:
        make().fetch_agents()
    assert not isinstance(err.value, VendorAuthError | VendorTransientError | VendorDataError)


def test_details_post_that_is_not_json_is_a_data_error(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]
) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    mock.post(HOSTS_URL).mock(return_value=httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(VendorDataError, match="POST /devices/entities/devices/v2 answered HTTP 200"):
        make().fetch_agents()


def test_token_posted_once_and_renewed_before_expiry(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient], mono: Mono
) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    route = mock.post(TOKEN_URL).mock(side_effect=[token("first"), token("second")])
    client = make(member_cid="child-cid")
    client.fetch_agents()
    form = parse_qs(route.calls[0].request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["cid"],
        "client_secret": [SECRET],
        "member_cid": ["child-cid"],
    }
    mono.now += 1799 - 120  # two minutes left: still the cached token
    client.fetch_agents()
    assert route.call_count == 1
    mono.now += 90  # 30 s left: renewed before it expires
    client.fetch_agents()
    assert route.call_count == 2
    scroll_auth = [c.request.headers["Authorization"] for c in mock.routes[1].calls]  # type: ignore[index]
    assert scroll_auth == ["Bearer first", "Bearer first", "Bearer second"]


def test_revoked_token_is_replaced_once(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    mock.post(TOKEN_URL).mock(side_effect=[token("old"), token("new")])
    client = make()
    client.tokens.token()
    mock.get(SCROLL_URL).mock(
        side_effect=lambda r: (
            httpx.Response(200, json=scroll([host(0)["device_id"]], "", 1))
            if r.headers["Authorization"] == "Bearer new"
            else httpx.Response(401, json={"errors": [{"code": 401, "message": "access denied, invalid bearer token"}]})
        )
    )
    assert [a.attributes for a in client.fetch_agents()] == [{"falcon:ztaScore": 87}]


def test_rate_limit_epoch_header_is_honoured(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient], sleep: SimSleep
) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    retry_at = int(NOW.timestamp()) + 17
    limited = httpx.Response(
        429,
        headers={"X-Ratelimit-Limit": "6000", "X-Ratelimit-Remaining": "0", "X-RateLimit-RetryAfter": str(retry_at)},
        json={"errors": [{"code": 429, "message": "API rate limit exceeded."}]},
    )
    mock.post(HOSTS_URL).mock(side_effect=[limited, httpx.Response(200, json=entities([host(0)]))])
    agents = make().fetch_agents()
    assert len(agents) == 1
    assert 17.0 in sleep.sleeps


def test_rate_limit_epoch_header_on_zta_is_honoured(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient], sleep: SimSleep
) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    retry_at = int(NOW.timestamp()) + 9
    limited = httpx.Response(429, headers={"X-RateLimit-RetryAfter": str(retry_at)}, json={"errors": []})
    mock.get(ZTA_URL).mock(side_effect=[limited, httpx.Response(200, json=entities([zta(0, 12)]))])
    assert make().fetch_agents()[0].attributes == {"falcon:ztaScore": 12}
    assert sleep.sleeps == [9.0]


def test_wrong_credentials_are_an_auth_error_without_the_secret(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]
) -> None:
    mock.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            403, json={"errors": [{"code": 403, "message": f"Failed to issue access token - {SECRET}"}]}
        )
    )
    with pytest.raises(VendorAuthError) as err:
        make().fetch_agents()
    assert SECRET not in err.value.message


def test_missing_scope_on_zta_is_an_auth_error(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    mock.get(ZTA_URL).mock(
        return_value=httpx.Response(
            403, json={"errors": [{"code": 403, "message": "access denied, authorization failed"}]}
        )
    )
    with pytest.raises(VendorAuthError, match="ZTA scope"):
        make().fetch_agents()


def test_server_errors_are_transient(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    serve_all(mock, [host(0)], [zta(0)])
    mock.get(ZTA_URL).mock(return_value=httpx.Response(503, json={"errors": []}))
    with pytest.raises(VendorTransientError):
        make().fetch_agents()


@pytest.mark.parametrize(
    ("raw_host", "raw_zta"),
    [
        ("not an object", None),
        ({"hostname": "x"}, None),
        (host(1, serial_number=12345), None),
        (host(1, last_seen="yesterday"), None),
        (host(1), zta(1, overall="87")),
        (host(1), zta(1, overall=101)),
        (host(1), zta(1, overall=True)),
        (host(1), zta(1, assessment=[1])),
    ],
)
def test_malformed_values_are_data_errors(raw_host: Any, raw_zta: Any) -> None:
    with pytest.raises(VendorDataError):
        agent_from_falcon(raw_host, raw_zta)


def test_malformed_scroll_is_a_data_error(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(SCROLL_URL).mock(return_value=httpx.Response(200, json={"resources": "nope"}))
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_serial_falls_back_to_zta_and_nulls_stay_unset() -> None:
    agent = agent_from_falcon(host(3, serial_number=None, mac_address=None), zta(3, system_serial_number="ZTA-SN"))
    assert agent.serial == "ZTA-SN"
    assert agent.mac_addresses == ("3c2c30a1b203",)
    bare = agent_from_falcon(host(4, serial_number="", connection_mac_address="00-00-00-00-00-00"), None)
    assert bare.serial is None and bare.attributes == {} and bare.mac_addresses == ("a483e7112204",)


def test_verify_fetches_one_host(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    serve_all(mock, [host(0), host(1)], [zta(0)])
    assert make().verify() == 1
    assert mock.routes[1].calls[0].request.url.params["limit"] == "1"  # type: ignore[index]


def test_regions_and_urls() -> None:
    assert base_url_for(None, None) == REGIONS["us-1"]
    assert base_url_for("EU-1", "") == "https://api.eu-1.crowdstrike.com"
    assert base_url_for("eu-1", "http://127.0.0.1:9/") == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="known: us-1"):
        base_url_for("mars-1", None)
    assert reported_macs(["A4-83-E7-11-22-33", "a483e71122", "ff-ff-ff-ff-ff-ff"]) == ("a483e7112233",)


def test_spec_and_build() -> None:
    assert SPEC.namespace == "falcon" and [a.key for a in SPEC.attributes] == ["falcon:ztaScore"]
    assert {f.name for f in SPEC.fields if f.secret} == {"client_secret"}
    with pytest.raises(ValueError):
        build({"client_id": "x", "client_secret": ""})
    client = build({"client_id": "x", "client_secret": "y", "region": "us-2"})
    try:
        assert client.url == "https://api.us-2.crowdstrike.com" and "y" not in repr(client)
    finally:
        client.close()


def test_other_refusals_are_vendor_errors(mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(SCROLL_URL).mock(return_value=httpx.Response(400, json={"errors": [{"code": 400, "message": "bad"}]}))
    with pytest.raises(VendorError) as err:
        make().fetch_agents()
    assert not isinstance(err.value, VendorAuthError | VendorTransientError | VendorDataError)


def test_api_401_with_a_fresh_token_is_an_auth_error(
    mock: respx.MockRouter, make: Callable[..., CrowdStrikeClient]
) -> None:
    token_route = mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(SCROLL_URL).mock(
        return_value=httpx.Response(
            401, json={"errors": [{"code": 401, "message": "access denied, invalid bearer token"}]}
        )
    )
    with pytest.raises(VendorAuthError, match="refused the credentials"):
        make().fetch_agents()
    assert token_route.call_count == 1  # a token fetched for this very call is not fetched again
