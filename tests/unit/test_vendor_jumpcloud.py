"""JumpCloudClient against respx: skip/totalCount paging, System Insights MACs, mapping, retries and errors."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.jumpcloud import (
    SPEC,
    SYSTEM_FIELDS,
    JumpCloudClient,
    agent_from_jumpcloud,
    normalize_base_url,
)
from tests.fakes.sim_time import SimSleep

CONSOLE = "https://console.jumpcloud.com"
SYSTEMS = f"{CONSOLE}/api/systems"
INTERFACES = f"{CONSOLE}/api/v2/systeminsights/interface_details"
KEY = "jc-unit-key-0123456789"


def sid(i: int) -> str:
    return f"65f0c1a2b3c4d5e6f7a8{i:04x}"


def system(i: int, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "_id": sid(i),
        "displayName": f"host-{i}",
        "hostname": f"host-{i}.local",
        "serialNumber": f"SN{i:04d}",
        "active": True,
        "lastContact": "2026-11-30T09:00:41.000Z",
        "agentVersion": "1.178.0",
        "fde": {"active": True, "keyPresent": False},
        "mdm": {"vendor": "internal", "dep": True},
        "policyStats": {"total": 6, "success": 4, "failed": 2, "pending": 0},
    }
    raw.update(overrides)
    return raw


def page(systems: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"totalCount": total, "results": systems}


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Iterator[Callable[..., JumpCloudClient]]:
    clients: list[JumpCloudClient] = []

    def factory(**kwargs: Any) -> JumpCloudClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(7))
        kwargs.setdefault("base_url", CONSOLE)
        client = JumpCloudClient(kwargs.pop("api_key", KEY), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def skip_route(
    mock: respx.MockRouter, pages: dict[str, httpx.Response], seen: list[httpx.Request] | None = None
) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return pages[request.url.params["skip"]]

    return mock.get(SYSTEMS).mock(side_effect=answer)


# -- paging and mapping ----------------------------------------------------------------------------------


def test_skip_pages_until_total_count_with_headers_fields_and_progress(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    seen: list[httpx.Request] = []
    skip_route(
        mock,
        {
            "0": httpx.Response(200, json=page([system(1), system(2)], 5)),
            "2": httpx.Response(200, json=page([system(3), system(4)], 5)),
            "4": httpx.Response(200, json=page([system(5)], 5)),
        },
        seen,
    )
    progress: list[tuple[int, int | None]] = []
    agents = make(page_size=2, mac_lookup=False, org_id=" org-42 ").fetch_agents(
        progress=lambda n, total: progress.append((n, total))
    )
    assert [a.id for a in agents] == [sid(i) for i in range(1, 6)]
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert [r.url.params["skip"] for r in seen] == ["0", "2", "4"]
    for request in seen:
        assert request.url.params["limit"] == "2"
        assert request.url.params["fields"] == " ".join(SYSTEM_FIELDS)
        assert "sort" not in request.url.params  # as the vendor's SDK pages: limit, skip, no sort
        assert request.headers["x-api-key"] == KEY
        assert request.headers["x-org-id"] == "org-42"
        assert "Authorization" not in request.headers


def test_no_org_id_sends_no_org_header(mock: respx.MockRouter, make: Callable[..., JumpCloudClient]) -> None:
    route = mock.get(SYSTEMS).respond(200, json=page([], 0))
    assert make(mac_lookup=False).fetch_agents() == []
    assert "x-org-id" not in route.calls.last.request.headers


def test_a_page_shorter_than_asked_does_not_end_the_listing_but_total_count_does(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    seen: list[httpx.Request] = []
    skip_route(
        mock,
        {
            "0": httpx.Response(200, json=page([system(1)], 3)),  # a server capping limit at 1
            "1": httpx.Response(200, json=page([system(2)], 3)),
            "2": httpx.Response(200, json=page([system(3)], 3)),
        },
        seen,
    )
    assert len(make(page_size=2, mac_lookup=False).fetch_agents()) == 3
    assert [r.url.params["skip"] for r in seen] == ["0", "1", "2"]


def test_an_empty_page_ends_the_listing_even_if_the_total_says_more(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    route = skip_route(
        mock, {"0": httpx.Response(200, json=page([system(1)], 9)), "1": httpx.Response(200, json=page([], 9))}
    )
    assert len(make(page_size=2, mac_lookup=False).fetch_agents()) == 1
    assert route.call_count == 2


def test_the_reference_sample_maps_as_documented() -> None:
    """VENDORS-MORE.md §7's sample systems, verbatim."""
    ana = agent_from_jumpcloud(
        {
            "_id": "65f0c1a2b3c4d5e6f7a8b9c0",
            "displayName": "ana-mbp",
            "hostname": "ana-mbp.local",
            "serialNumber": "C02ZK1ABMD6T",
            "os": "Mac OS X",
            "osFamily": "darwin",
            "version": "15.6.1",
            "agentVersion": "1.178.0",
            "active": True,
            "lastContact": "2026-11-30T09:00:41.000Z",
            "fde": {"active": True, "keyPresent": True},
            "mdm": {"vendor": "internal", "dep": True},
            "policyStats": {"total": 6, "success": 6, "failed": 0, "pending": 0},
        }
    )
    assert (ana.vendor, ana.id, ana.hostname, ana.serial) == (
        "jumpcloud",
        "65f0c1a2b3c4d5e6f7a8b9c0",
        "ana-mbp.local",
        "C02ZK1ABMD6T",
    )
    assert dict(ana.attributes) == {
        "jumpcloud:present": True,
        "jumpcloud:active": True,
        "jumpcloud:fdeActive": True,
        "jumpcloud:fdeKeyPresent": True,
        "jumpcloud:mdmVendor": "internal",
        "jumpcloud:policiesFailed": 0,
        "jumpcloud:agentVersion": "1.178.0",
    }
    assert ana.last_seen == datetime(2026, 11, 30, 9, 0, 41, tzinfo=UTC)
    bo = agent_from_jumpcloud(
        system(2, active=False, fde={"active": False, "keyPresent": False}, mdm={"vendor": "none"})
    )
    assert bo.active is False
    assert bo.attributes["jumpcloud:active"] is False and bo.attributes["jumpcloud:mdmVendor"] == "none"
    assert bo.attributes["jumpcloud:policiesFailed"] == 2


def test_null_or_missing_values_leave_attributes_unset_never_false() -> None:
    agent = agent_from_jumpcloud(
        {
            "_id": sid(1),
            "displayName": "BO-LAPTOP",
            "serialNumber": None,
            "active": None,
            "lastContact": None,
            "fde": {"active": None},
            "mdm": None,
            "policyStats": {"failed": None},
            "agentVersion": "",
        }
    )
    assert dict(agent.attributes) == {"jumpcloud:present": True}
    assert agent.hostname == "BO-LAPTOP"  # no hostname: the display name
    assert agent.serial is None and agent.last_seen is None
    assert agent.active is True  # unknown connection state does not demote the agent


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"active": "true"}, "active"),
        ({"fde": {"active": 1}}, "active"),
        ({"fde": "on"}, "fde"),
        ({"mdm": {"vendor": 3}}, "vendor"),
        ({"policyStats": {"failed": -1}}, "failed"),
        ({"policyStats": {"failed": 1.5}}, "failed"),
        ({"policyStats": {"failed": True}}, "failed"),
        ({"serialNumber": ["x"]}, "serialNumber"),
        ({"lastContact": "yesterday"}, "lastContact"),
    ],
)
def test_malformed_fields_refuse_the_snapshot(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(VendorDataError, match=field):
        agent_from_jumpcloud(system(1, **overrides))


def test_objects_without_an_id_are_refused() -> None:
    with pytest.raises(VendorDataError, match="not an object"):
        agent_from_jumpcloud([])
    with pytest.raises(VendorDataError, match="no usable _id"):
        agent_from_jumpcloud(system(1, _id=""))


@pytest.mark.parametrize(
    "body",
    [
        {"results": []},
        {"totalCount": 1, "results": None},
        {"totalCount": -1, "results": []},
        {"totalCount": "3", "results": []},
        {"totalCount": 2, "results": [system(1), 7]},
        [system(1)],
    ],
)
def test_malformed_pages_raise_data_error(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], body: Any
) -> None:
    mock.get(SYSTEMS).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make(mac_lookup=False).fetch_agents()


# -- MAC addresses from System Insights ----------------------------------------------------------------------


def test_macs_come_from_account_wide_interface_pages(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    mock.get(SYSTEMS).respond(200, json=page([system(1), system(2), system(3)], 3))
    rows = [
        {"system_id": sid(1), "interface": "en0", "mac": "A4:83:E7:11:22:33"},
        {"system_id": sid(1), "interface": "en1", "mac": "a4:83:e7:11:22:33"},  # the same NIC twice
        {"system_id": sid(1), "interface": "utun0", "mac": "00:00:00:00:00:00"},
        {"system_id": sid(2), "interface": "Ethernet", "mac": "14-98-77-AA-BB-CC"},
        {"system_id": sid(2), "interface": "lo0", "mac": ""},
        {"system_id": sid(9), "interface": "en0", "mac": "a4:83:e7:99:99:99"},  # not a listed system
        {"system_id": sid(2), "interface": "Wi-Fi", "mac": None},
    ]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        skip = int(request.url.params["skip"])
        return httpx.Response(200, json=rows[skip : skip + 3])

    mock.get(INTERFACES).mock(side_effect=answer)
    agents = make(interface_page_size=3).fetch_agents()
    assert [a.mac_addresses for a in agents] == [("a483e7112233",), ("149877aabbcc",), ()]
    assert [(r.url.params["skip"], r.url.params["limit"]) for r in seen] == [
        ("0", "3"),
        ("3", "3"),
        ("6", "3"),
        ("7", "3"),  # until an empty page: a short one may be a server-side cap
    ]
    assert all(r.headers["x-api-key"] == KEY for r in seen)


def test_a_full_last_interface_page_asks_once_more(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    mock.get(SYSTEMS).respond(200, json=page([system(1)], 1))
    route = mock.get(INTERFACES).mock(
        side_effect=[
            httpx.Response(200, json=[{"system_id": sid(1), "mac": "a4:83:e7:11:22:33"}]),
            httpx.Response(200, json=[]),
        ]
    )
    (agent,) = make(interface_page_size=1).fetch_agents()
    assert agent.mac_addresses == ("a483e7112233",) and route.call_count == 2


def test_mac_lookup_off_sends_no_insights_request(mock: respx.MockRouter, make: Callable[..., JumpCloudClient]) -> None:
    mock.get(SYSTEMS).respond(200, json=page([system(1)], 1))
    route = mock.get(INTERFACES).respond(200, json=[])
    (agent,) = make(mac_lookup=False).fetch_agents()
    assert agent.mac_addresses == () and route.call_count == 0


def test_no_systems_no_agents_whatever_insights_list(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    """Interfaces are listed beside the systems, so rows of systems not listed (deleted meanwhile) are ignored."""
    mock.get(SYSTEMS).respond(200, json=page([], 0))
    mock.get(INTERFACES).mock(
        side_effect=[
            httpx.Response(200, json=[{"system_id": sid(1), "mac": "a4:83:e7:11:22:33"}]),
            httpx.Response(200, json=[]),
        ]
    )
    assert make().fetch_agents() == []


def test_insights_are_listed_while_the_systems_are_paged(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    """The interface listing does not wait for the systems' last page: the systems' second page is only answered
    once an interface page was asked for (a sequential client would wait here until the timeout fails it)."""
    asked = threading.Event()

    def interfaces(request: httpx.Request) -> httpx.Response:
        asked.set()
        return httpx.Response(
            200, json=[] if request.url.params["skip"] != "0" else [{"system_id": sid(2), "mac": "a4:83:e7:11:22:33"}]
        )

    def systems(request: httpx.Request) -> httpx.Response:
        if request.url.params["skip"] != "0":
            assert asked.wait(10), "the interface listing waited for the systems"
            return httpx.Response(200, json=page([system(2)], 2))
        return httpx.Response(200, json=page([system(1)], 2))

    mock.get(SYSTEMS).mock(side_effect=systems)
    mock.get(INTERFACES).mock(side_effect=interfaces)
    agents = make(page_size=1).fetch_agents()
    assert [(a.id, a.mac_addresses) for a in agents] == [(sid(1), ()), (sid(2), ("a483e7112233",))]


@pytest.mark.parametrize(
    "body", [{"results": []}, [{"interface": "en0", "mac": "a4:83:e7:11:22:33"}], [{"system_id": sid(1), "mac": 42}]]
)
def test_malformed_insights_refuse_the_snapshot(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], body: Any
) -> None:
    mock.get(SYSTEMS).respond(200, json=page([system(1)], 1))
    mock.get(INTERFACES).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_insights_failure_fails_the_whole_fetch(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], sleep: SimSleep
) -> None:
    mock.get(SYSTEMS).respond(200, json=page([system(1)], 1))
    mock.get(INTERFACES).respond(503, json={"message": "Service Unavailable"})
    with pytest.raises(VendorTransientError, match="interface_details"):
        make().fetch_agents()
    assert len(sleep.sleeps) == 4


# -- retries and errors -------------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], sleep: SimSleep
) -> None:
    route = mock.get(SYSTEMS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7", "X-RateLimit-Remaining": "0"}),
            httpx.Response(200, json=page([system(1)], 1)),
        ]
    )
    assert len(make(mac_lookup=False).fetch_agents()) == 1
    assert sleep.sleeps == [7.0] and route.call_count == 2


def test_429_without_retry_after_backs_off(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], sleep: SimSleep
) -> None:
    mock.get(SYSTEMS).mock(side_effect=[httpx.Response(429), httpx.Response(200, json=page([], 0))])
    assert make(mac_lookup=False).fetch_agents() == []
    assert len(sleep.sleeps) == 1 and sleep.sleeps[0] > 0


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_is_an_auth_error_without_the_key(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], status: int
) -> None:
    route = mock.get(SYSTEMS).respond(status, json={"message": f"Unauthorized key {KEY}"})
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    assert "JumpCloud refused the credentials" in caught.value.message
    assert KEY not in caught.value.message and "***" in caught.value.message


def test_bad_request_is_a_plain_vendor_error(mock: respx.MockRouter, make: Callable[..., JumpCloudClient]) -> None:
    mock.get(SYSTEMS).respond(400, json={"message": "limit must be between 1 and 100"})
    with pytest.raises(VendorError) as caught:
        make().fetch_agents()
    assert not isinstance(caught.value, VendorAuthError | VendorTransientError | VendorDataError)
    assert "limit must be between 1 and 100" in caught.value.message


def test_5xx_mid_paging_returns_nothing(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient], sleep: SimSleep
) -> None:
    skip_route(
        mock,
        {"0": httpx.Response(200, json=page([system(1)], 3)), "1": httpx.Response(502, text="<html>bad</html>")},
    )
    with pytest.raises(VendorTransientError, match="502"):
        make(page_size=1).fetch_agents()


def test_verify_fetches_one_system_and_no_insights(
    mock: respx.MockRouter, make: Callable[..., JumpCloudClient]
) -> None:
    systems = mock.get(SYSTEMS).respond(200, json=page([system(1)], 40))
    insights = mock.get(INTERFACES).respond(200, json=[])
    assert make().verify() == 1
    assert systems.calls.last.request.url.params["limit"] == "1"
    assert insights.call_count == 0
    mock.get(SYSTEMS).respond(200, json=page([system(1, fde="yes")], 1))
    with pytest.raises(VendorDataError):
        make().verify()


# -- URL, settings, spec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", CONSOLE),
        ("console.jumpcloud.com", CONSOLE),
        ("https://console.jumpcloud.com/api/", CONSOLE),
        ("https://console.jumpcloud.com/api/v2", CONSOLE),
        ("https://console.eu.jumpcloud.com", "https://console.eu.jumpcloud.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
    ],
)
def test_base_url_normalization(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://console.jumpcloud.com", "https://u:p@console.jumpcloud.com", "https://"])
def test_bad_base_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="JumpCloud URL"):
        normalize_base_url(bad)


def test_spec_build_and_settings(mock: respx.MockRouter) -> None:
    client = SPEC.build({"api_key": f" {KEY} ", "org_id": "org-1", "mac_lookup": "Off"})
    try:
        assert isinstance(client, JumpCloudClient)
        assert (client.base_url, client.org_id, client.mac_lookup) == (CONSOLE, "org-1", False)
        assert KEY not in repr(client)
    finally:
        client.close()
    on = SPEC.build({"api_key": KEY})
    try:
        assert isinstance(on, JumpCloudClient) and on.mac_lookup is True and on.org_id is None
    finally:
        on.close()
    with pytest.raises(ValueError, match="API key"):
        SPEC.build({"api_key": "  "})
    with pytest.raises(ValueError, match="on or off"):
        SPEC.build({"api_key": KEY, "mac_lookup": "sometimes"})


def test_spec_describes_fields_and_attributes() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace) == ("jumpcloud", "JumpCloud", "jumpcloud")
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [
        ("api_key", True, True),
        ("org_id", False, False),
        ("base_url", False, False),
        ("mac_lookup", False, False),
    ]
    assert {a.key: a.type for a in SPEC.attributes} == {
        "jumpcloud:present": "boolean",
        "jumpcloud:active": "boolean",
        "jumpcloud:fdeActive": "boolean",
        "jumpcloud:fdeKeyPresent": "boolean",
        "jumpcloud:mdmVendor": "string",
        "jumpcloud:policiesFailed": "number",
        "jumpcloud:agentVersion": "string",
    }
    attributes = {a.key: a for a in SPEC.attributes}
    assert attributes["jumpcloud:mdmVendor"].values == ("internal", "external", "none", "unknown")
    assert attributes["jumpcloud:agentVersion"].version
    assert "jumpcloud:stale" not in attributes  # freshness is the framework's max_agent_age
    assert all(a.description for a in SPEC.attributes)
