"""SimpleMDMClient against respx: starting_after/has_more paging, mapping with nulls and MACs, retries, errors."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.simplemdm import SPEC, SimpleMDMClient, agent_from_simplemdm, normalize_base_url
from tests.fakes.sim_time import SimSleep

API = "https://a.simplemdm.com"
DEVICES = f"{API}/api/v1/devices"
KEY = "smdm-unit-key-abcdef123"
BASIC = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()


def device(i: int, **attributes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": f"Mac {i}",
        "device_name": f"host-{i}",
        "status": "enrolled",
        "serial_number": f"SN{i:04d}",
        "wifi_mac": f"a4:83:e7:00:00:{i:02x}",
        "ethernet_macs": [],
        "last_seen_at": "2026-11-30T01:02:54.000-08:00",
        "is_supervised": True,
        "is_dep_enrollment": True,
        "filevault_enabled": True,
        "firewall": {"enabled": True, "block_all_incoming": False, "stealth_mode": True},
        "system_integrity_protection_enabled": True,
        "passcode_compliant": None,
    }
    values.update(attributes)
    return {"type": "device", "id": 100 + i, "attributes": values, "relationships": {}}


def page(devices: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {"data": devices, "has_more": more}


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Iterator[Callable[..., SimpleMDMClient]]:
    clients: list[SimpleMDMClient] = []

    def factory(**kwargs: Any) -> SimpleMDMClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(3))
        kwargs.setdefault("base_url", API)
        client = SimpleMDMClient(kwargs.pop("api_key", KEY), **kwargs)
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
        return pages[request.url.params.get("starting_after")]

    return mock.get(DEVICES).mock(side_effect=answer)


# -- paging and mapping ----------------------------------------------------------------------------------


def test_pages_follow_the_last_id_while_has_more(mock: respx.MockRouter, make: Callable[..., SimpleMDMClient]) -> None:
    seen: list[httpx.Request] = []
    cursor_route(
        mock,
        {
            None: httpx.Response(200, json=page([device(1), device(2)], True)),
            "102": httpx.Response(200, json=page([device(3), device(4)], True)),
            "104": httpx.Response(200, json=page([device(5)], False)),
        },
        seen,
    )
    progress: list[tuple[int, int | None]] = []
    agents = make(page_size=2).fetch_agents(progress=lambda n, total: progress.append((n, total)))
    assert [a.id for a in agents] == ["101", "102", "103", "104", "105"]
    assert progress == [(2, None), (4, None), (5, None)]
    assert [r.url.params.get("starting_after") for r in seen] == [None, "102", "104"]
    for request in seen:
        assert request.url.params["limit"] == "2"
        assert "include_awaiting_enrollment" not in request.url.params  # default false: enrolled devices only
        assert request.headers["Authorization"] == BASIC


def test_the_reference_sample_maps_as_documented() -> None:
    """VENDORS-MORE.md §8's sample devices, verbatim."""
    mac = agent_from_simplemdm(
        {
            "type": "device",
            "id": 121,
            "attributes": {
                "name": "Ana's MacBook Pro",
                "device_name": "ana-mbp",
                "status": "enrolled",
                "serial_number": "C02ZK1ABMD6T",
                "wifi_mac": "a4:83:e7:11:22:33",
                "ethernet_macs": ["36:c1:92:44:55:66"],
                "last_seen_at": "2026-11-30T01:02:54.000-08:00",
                "os_version": "15.6.1",
                "is_supervised": True,
                "is_dep_enrollment": True,
                "filevault_enabled": True,
                "firewall": {"enabled": True, "block_all_incoming": False, "stealth_mode": True},
                "system_integrity_protection_enabled": True,
                "passcode_compliant": None,
            },
            "relationships": {"device_group": {"data": {"type": "device_group", "id": 1}}},
        }
    )
    assert (mac.vendor, mac.id, mac.hostname, mac.serial) == ("simplemdm", "121", "ana-mbp", "C02ZK1ABMD6T")
    assert dict(mac.attributes) == {
        "simplemdm:present": True,
        "simplemdm:status": "enrolled",
        "simplemdm:supervised": True,
        "simplemdm:fileVaultEnabled": True,
        "simplemdm:firewallEnabled": True,
        "simplemdm:SIPEnabled": True,
        "simplemdm:depEnrolled": True,
    }  # passcode_compliant null: unset, not false
    assert mac.mac_addresses == ("a483e7112233", "36c192445566")
    assert mac.last_seen == datetime(2026, 11, 30, 9, 2, 54, tzinfo=UTC)
    assert mac.active is True


def test_an_iphone_without_firewall_or_sip_leaves_them_unset() -> None:
    phone = agent_from_simplemdm(
        device(
            2,
            serial_number="DNFJE9DNG5MG",
            wifi_mac="f0:db:e2:df:e9:2f",
            is_supervised=False,
            is_dep_enrollment=False,
            filevault_enabled=False,
            firewall={"enabled": None, "block_all_incoming": None, "stealth_mode": None},
            system_integrity_protection_enabled=None,
            passcode_compliant=True,
        )
    )
    assert dict(phone.attributes) == {
        "simplemdm:present": True,
        "simplemdm:status": "enrolled",
        "simplemdm:supervised": False,
        "simplemdm:fileVaultEnabled": False,
        "simplemdm:passcodeCompliant": True,
        "simplemdm:depEnrolled": False,
    }
    assert phone.mac_addresses == ("f0dbe2dfe92f",)


def test_everything_null_leaves_only_presence() -> None:
    agent = agent_from_simplemdm(
        device(
            3,
            status=None,
            device_name=None,
            serial_number=None,
            wifi_mac=None,
            ethernet_macs=None,
            last_seen_at=None,
            is_supervised=None,
            is_dep_enrollment=None,
            filevault_enabled=None,
            firewall=None,
            system_integrity_protection_enabled=None,
        )
    )
    assert dict(agent.attributes) == {"simplemdm:present": True}
    assert (agent.hostname, agent.serial, agent.last_seen, agent.mac_addresses) == ("Mac 3", None, None, ())


def test_status_spaces_become_underscores_and_other_states_are_inactive() -> None:
    agent = agent_from_simplemdm(device(4, status="awaiting enrollment"))
    assert agent.attributes["simplemdm:status"] == "awaiting_enrollment" and agent.active is False


def test_macs_are_normalised_deduplicated_and_placeholders_dropped() -> None:
    agent = agent_from_simplemdm(
        device(5, wifi_mac="A4-83-E7-11-22-33", ethernet_macs=["a4:83:e7:11:22:33", "00:00:00:00:00:00", "", "n/a"])
    )
    assert agent.mac_addresses == ("a483e7112233",)


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"is_supervised": "true"}, "is_supervised"),
        ({"filevault_enabled": 1}, "filevault_enabled"),
        ({"firewall": True}, "firewall"),
        ({"firewall": {"enabled": "yes"}}, "enabled"),
        ({"status": 3}, "status"),
        ({"serial_number": 42}, "serial_number"),
        ({"ethernet_macs": "a4:83:e7:11:22:33"}, "ethernet_macs"),
        ({"wifi_mac": 12}, "MAC"),
        ({"last_seen_at": "recently"}, "last_seen_at"),
    ],
)
def test_malformed_fields_refuse_the_snapshot(attributes: dict[str, Any], field: str) -> None:
    with pytest.raises(VendorDataError, match=field):
        agent_from_simplemdm(device(1, **attributes))


def test_devices_without_id_or_attributes_are_refused() -> None:
    with pytest.raises(VendorDataError, match="not an object"):
        agent_from_simplemdm("device")
    with pytest.raises(VendorDataError, match="no usable id"):
        agent_from_simplemdm({"id": True, "attributes": {}})
    with pytest.raises(VendorDataError, match="no attributes"):
        agent_from_simplemdm({"id": 7, "attributes": None})


@pytest.mark.parametrize(
    "body",
    [
        {"has_more": False},
        {"data": None, "has_more": False},
        {"data": [], "has_more": "no"},
        {"data": [], "has_more": True},
        {"data": [device(1), {"id": None, "attributes": {}}], "has_more": True},
        [device(1)],
    ],
)
def test_malformed_pages_raise_data_error(
    mock: respx.MockRouter, make: Callable[..., SimpleMDMClient], body: Any
) -> None:
    mock.get(DEVICES).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_a_repeated_cursor_is_a_data_error(mock: respx.MockRouter, make: Callable[..., SimpleMDMClient]) -> None:
    cursor_route(
        mock,
        {
            None: httpx.Response(200, json=page([device(1)], True)),
            "101": httpx.Response(200, json=page([device(1)], True)),
        },
    )
    with pytest.raises(VendorDataError, match="repeated a starting_after id"):
        make(page_size=1).fetch_agents()


# -- retries and errors -------------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(
    mock: respx.MockRouter, make: Callable[..., SimpleMDMClient], sleep: SimSleep
) -> None:
    route = mock.get(DEVICES).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "12"}, json={"errors": [{"title": "rate limited"}]}),
            httpx.Response(200, json=page([device(1)], False)),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps == [12.0] and route.call_count == 2


def test_429_without_retry_after_backs_off_from_five_seconds(
    mock: respx.MockRouter, make: Callable[..., SimpleMDMClient], sleep: SimSleep
) -> None:
    mock.get(DEVICES).mock(side_effect=[httpx.Response(429), httpx.Response(200, json=page([], False))])
    assert make().fetch_agents() == []
    assert len(sleep.sleeps) == 1 and 2.5 <= sleep.sleeps[0] <= 5.0


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_is_an_auth_error_without_the_key(
    mock: respx.MockRouter, make: Callable[..., SimpleMDMClient], status: int
) -> None:
    route = mock.get(DEVICES).respond(status, json={"errors": [{"title": f"api key {KEY} is invalid"}]})
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    assert (
        "SimpleMDM refused the credentials" in caught.value.message and "api key *** is invalid" in caught.value.message
    )
    assert KEY not in str(caught.value)


def test_other_refusals_show_the_error_title(mock: respx.MockRouter, make: Callable[..., SimpleMDMClient]) -> None:
    mock.get(DEVICES).respond(404, json={"errors": [{"title": "object not found"}]})
    with pytest.raises(VendorError) as caught:
        make().fetch_agents()
    assert not isinstance(caught.value, VendorAuthError | VendorTransientError | VendorDataError)
    assert "HTTP 404 Not Found: object not found" in caught.value.message


def test_5xx_mid_paging_returns_nothing(
    mock: respx.MockRouter, make: Callable[..., SimpleMDMClient], sleep: SimSleep
) -> None:
    cursor_route(
        mock,
        {None: httpx.Response(200, json=page([device(1)], True)), "101": httpx.Response(503, text="down")},
    )
    with pytest.raises(VendorTransientError, match="503"):
        make(page_size=1).fetch_agents()
    assert len(sleep.sleeps) == 4


def test_verify_fetches_one_device(mock: respx.MockRouter, make: Callable[..., SimpleMDMClient]) -> None:
    route = mock.get(DEVICES).respond(200, json=page([device(1)], True))
    assert make().verify() == 1
    assert route.call_count == 1 and route.calls.last.request.url.params["limit"] == "1"
    mock.get(DEVICES).respond(200, json=page([{"id": 3, "attributes": "x"}], False))
    with pytest.raises(VendorDataError):
        make().verify()


# -- URL, spec -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", API),
        ("a.simplemdm.com", API),
        ("https://a.simplemdm.com/api/v1/", API),
        ("https://a.simplemdm.com/api/v1/devices", API),
        ("http://127.0.0.1:8999", "http://127.0.0.1:8999"),
    ],
)
def test_base_url_normalization(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="SimpleMDM API URL"):
        normalize_base_url("https://key:@a.simplemdm.com")


def test_spec_build(mock: respx.MockRouter) -> None:
    client = SPEC.build({"api_key": f" {KEY} ", "base_url": "a.simplemdm.com/api/v1"})
    try:
        assert isinstance(client, SimpleMDMClient) and client.base_url == API
        assert KEY not in repr(client)
        route = mock.get(DEVICES).respond(200, json=page([], False))
        assert client.fetch_agents() == []
        assert route.calls.last.request.headers["Authorization"] == BASIC
    finally:
        client.close()
    with pytest.raises(ValueError, match="API key"):
        SPEC.build({})


def test_spec_describes_fields_and_attributes() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace) == ("simplemdm", "SimpleMDM", "simplemdm")
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [
        ("api_key", True, True),
        ("base_url", False, False),
    ]
    types = {a.key: a.type for a in SPEC.attributes}
    assert types == {
        "simplemdm:present": "boolean",
        "simplemdm:status": "string",
        "simplemdm:supervised": "boolean",
        "simplemdm:fileVaultEnabled": "boolean",
        "simplemdm:firewallEnabled": "boolean",
        "simplemdm:SIPEnabled": "boolean",
        "simplemdm:passcodeCompliant": "boolean",
        "simplemdm:depEnrolled": "boolean",
    }
    status = next(a for a in SPEC.attributes if a.key == "simplemdm:status")
    assert status.values == ("enrolled", "awaiting_enrollment", "unenrolled")
    assert all(a.description for a in SPEC.attributes)
