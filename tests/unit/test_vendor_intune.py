"""IntuneClient against respx: Entra token lifecycle, @odata.nextLink paging, mapping, throttling and errors."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.intune import SPEC, IntuneClient, agent_from_intune, build, endpoints, reported_macs
from tests.fakes.sim_time import Mono, SimSleep

TENANT = "8f0e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com"
TOKEN_URL = f"{LOGIN}/{TENANT}/oauth2/v2.0/token"
DEVICES_URL = f"{GRAPH}/v1.0/deviceManagement/managedDevices"
SECRET = "intune~unit~secret~abcdef"


def device(i: int, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": f"1f0c2d3e-4a5b-4c6d-8e7f-{i:012x}",
        "deviceName": f"LAPTOP-{i:02d}",
        "serialNumber": f"SN{i:04d}",
        "wiFiMacAddress": f"3c2c30a1b2{i:02x}",
        "ethernetMacAddress": None,
        "lastSyncDateTime": "2026-11-30T08:41:10Z",
        "operatingSystem": "Windows",
        "complianceState": "compliant",
        "azureADRegistered": True,
        "deviceRegistrationState": "registered",
        "isSupervised": False,
        "isEncrypted": True,
        "managedDeviceOwnerType": "company",
    }
    raw.update(overrides)
    return raw


def token(value: str = "tok-1", expires_in: Any = 3599) -> httpx.Response:
    return httpx.Response(
        200,
        json={"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": value},
    )


def graph_page(devices: list[dict[str, Any]], next_skip: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"@odata.context": f"{GRAPH}/v1.0/$metadata#deviceManagement/managedDevices"}
    if next_skip is not None:
        body["@odata.nextLink"] = f"{DEVICES_URL}?$top=2&$skiptoken={next_skip}"
    body["value"] = devices
    return httpx.Response(200, json=body)


@pytest.fixture
def mono() -> Mono:
    return Mono(500.0)


@pytest.fixture
def sleep(mono: Mono) -> SimSleep:
    return SimSleep(mono)


@pytest.fixture
def make(sleep: SimSleep, mono: Mono) -> Iterator[Callable[..., IntuneClient]]:
    clients: list[IntuneClient] = []

    def factory(**kwargs: Any) -> IntuneClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(5))
        kwargs.setdefault("clock", mono)
        kwargs.setdefault("page_size", 2)
        client = IntuneClient(TENANT, kwargs.pop("client_id", "app-id"), kwargs.pop("client_secret", SECRET), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def serve(mock: respx.MockRouter, devices: list[dict[str, Any]]) -> respx.Route:
    mock.post(TOKEN_URL).mock(return_value=token())

    def page(request: httpx.Request) -> httpx.Response:
        skip = int(request.url.params.get("$skiptoken", "0"))
        chunk = devices[skip : skip + 2]
        more = skip + 2 < len(devices)
        return graph_page(chunk, str(skip + 2) if more else None)

    return mock.get(DEVICES_URL).mock(side_effect=page)


def test_follows_next_link_and_maps_values_verbatim(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    devices = [
        device(0),
        device(1, complianceState="inGracePeriod", managedDeviceOwnerType="personal", isSupervised=True),
        device(2, complianceState="unknownFutureValue", deviceRegistrationState="notRegisteredPendingEnrollment"),
        device(3, serialNumber=None),
        device(4, isEncrypted=None, azureADRegistered=None, complianceState=None),
    ]
    route = serve(mock, devices)
    progress: list[int] = []
    agents = make().fetch_agents(lambda n, _t: progress.append(n))
    assert [a.id for a in agents] == [d["id"] for d in devices]
    assert agents[0].attributes == {
        "intune:complianceState": "compliant",
        "intune:deviceRegistrationState": "registered",
        "intune:managedDeviceOwnerType": "company",
        "intune:azureADRegistered": True,
        "intune:isSupervised": False,
        "intune:isEncrypted": True,
    }
    assert agents[1].attributes["intune:complianceState"] == "inGracePeriod"
    assert agents[1].attributes["intune:isSupervised"] is True
    assert agents[2].attributes["intune:complianceState"] == "unknownFutureValue"
    assert agents[3].serial is None
    # null means "not collected": the attribute stays unset, never false
    assert "intune:isEncrypted" not in agents[4].attributes and "intune:azureADRegistered" not in agents[4].attributes
    assert "intune:complianceState" not in agents[4].attributes
    assert agents[0].mac_addresses == ("3c2c30a1b200",)
    assert agents[0].last_seen == datetime(2026, 11, 30, 8, 41, 10, tzinfo=UTC)
    assert progress == [2, 4, 5]
    first = route.calls[0].request.url.params
    assert first["$top"] == "2" and "complianceState" in first["$select"].split(",")
    assert [c.request.url.params.get("$skiptoken") for c in route.calls] == [None, "2", "4"]


def test_token_request_and_renewal_before_expiry(
    mock: respx.MockRouter, make: Callable[..., IntuneClient], mono: Mono
) -> None:
    serve(mock, [device(0)])
    route = mock.post(TOKEN_URL).mock(side_effect=[token("first"), token("second")])
    client = make()
    client.fetch_agents()
    form = parse_qs(route.calls[0].request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["app-id"],
        "client_secret": [SECRET],
        "scope": [f"{GRAPH}/.default"],
    }
    mono.now += 3599 - 90
    client.fetch_agents()
    assert route.call_count == 1
    mono.now += 45  # 45 s left: renewed before it runs out
    client.fetch_agents()
    assert route.call_count == 2


def test_expired_token_refused_by_graph_is_replaced_once(
    mock: respx.MockRouter, make: Callable[..., IntuneClient]
) -> None:
    mock.post(TOKEN_URL).mock(side_effect=[token("old"), token("new")])
    expired = httpx.Response(
        401,
        json={
            "error": {
                "code": "InvalidAuthenticationToken",
                "message": "Lifetime validation failed, the token is expired.",
            }
        },
    )
    mock.get(DEVICES_URL).mock(
        side_effect=lambda r: graph_page([device(0)]) if r.headers["Authorization"] == "Bearer new" else expired
    )
    client = make()
    client.tokens.token()
    assert len(client.fetch_agents()) == 1
    assert client.tokens.fetches == 2


def test_throttling_honours_retry_after_and_backs_off_without_it(
    mock: respx.MockRouter, make: Callable[..., IntuneClient], sleep: SimSleep
) -> None:
    serve(mock, [device(0)])
    throttled = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
    mock.get(DEVICES_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "13"}, json=throttled),
            httpx.Response(429, json=throttled),
            graph_page([device(0)]),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps[0] == 13.0 and len(sleep.sleeps) == 2 and sleep.sleeps[1] > 0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
        (400, {"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found"}),
    ],
)
def test_refused_credentials_are_auth_errors(
    mock: respx.MockRouter, make: Callable[..., IntuneClient], status: int, body: dict[str, Any]
) -> None:
    mock.post(TOKEN_URL).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(VendorAuthError) as err:
        make().fetch_agents()
    assert SECRET not in err.value.message and "AADSTS" in err.value.message


def test_missing_permission_is_an_auth_error(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(DEVICES_URL).mock(
        return_value=httpx.Response(
            403, json={"error": {"code": "Forbidden", "message": "Application is not authorized"}}
        )
    )
    with pytest.raises(VendorAuthError, match="not authorized"):
        make().fetch_agents()


def test_unknown_tenant_names_the_cause(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    mock.post(TOKEN_URL).mock(
        return_value=httpx.Response(400, json={"error": "invalid_request", "error_description": "AADSTS90002: Tenant"})
    )
    with pytest.raises(VendorError, match="AADSTS90002"):
        make().fetch_agents()


def test_server_errors_are_transient(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(DEVICES_URL).mock(return_value=httpx.Response(503, json={"error": {"code": "ServiceUnavailable"}}))
    with pytest.raises(VendorTransientError):
        make().fetch_agents()


def test_next_link_to_another_host_is_refused(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token())
    body = {"value": [device(0)], "@odata.nextLink": "https://evil.example.com/v1.0/deviceManagement/managedDevices"}
    mock.get(DEVICES_URL).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(VendorDataError, match="another host"):
        make().fetch_agents()


@pytest.mark.parametrize(
    "raw",
    [
        "not an object",
        {"deviceName": "no id"},
        device(1, isEncrypted="true"),
        device(1, complianceState=3),
        device(1, serialNumber=["x"]),
        device(1, lastSyncDateTime="soon"),
    ],
)
def test_malformed_devices_are_data_errors(raw: Any) -> None:
    with pytest.raises(VendorDataError):
        agent_from_intune(raw)


def test_malformed_page_is_a_data_error(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(DEVICES_URL).mock(return_value=httpx.Response(200, json={"devices": []}))
    with pytest.raises(VendorDataError, match="value list"):
        make().fetch_agents()


def test_never_synced_and_mac_forms() -> None:
    agent = agent_from_intune(
        device(2, lastSyncDateTime="0001-01-01T00:00:00Z", wiFiMacAddress="A4:83:E7:11:22:33", ethernetMacAddress="")
    )
    assert agent.last_seen is None and agent.mac_addresses == ("a483e7112233",)
    assert reported_macs(["000000000000", "3C2C30A1B2C3", "3c:2c:30:a1:b2:c3", "nope", None]) == ("3c2c30a1b2c3",)


def test_verify_asks_for_one_device(mock: respx.MockRouter, make: Callable[..., IntuneClient]) -> None:
    route = serve(mock, [device(0), device(1)])
    mock.get(DEVICES_URL).mock(return_value=graph_page([device(0)], "1"))
    assert make().verify() == 1
    assert route.calls[0].request.url.params["$top"] == "1"


def test_clouds_spec_and_build() -> None:
    assert endpoints(None) == (LOGIN, GRAPH)
    assert endpoints("us-gov") == ("https://login.microsoftonline.us", "https://graph.microsoft.us")
    assert endpoints("global", "http://127.0.0.1:1", "http://127.0.0.1:1/") == ("http://127.0.0.1:1",) * 2
    with pytest.raises(ValueError, match="known: global"):
        endpoints("moon")
    with pytest.raises(ValueError, match="tenant"):
        build({"tenant_id": "", "client_id": "a", "client_secret": "b"})
    assert {f.name for f in SPEC.fields if f.secret} == {"client_secret"}
    keys = {a.key: a for a in SPEC.attributes}
    assert set(keys) == {
        "intune:complianceState",
        "intune:azureADRegistered",
        "intune:deviceRegistrationState",
        "intune:isSupervised",
        "intune:isEncrypted",
        "intune:managedDeviceOwnerType",
    }
    assert "inGracePeriod" in keys["intune:complianceState"].values


def test_graph_401_with_a_fresh_token_is_an_auth_error(
    mock: respx.MockRouter, make: Callable[..., IntuneClient]
) -> None:
    token_route = mock.post(TOKEN_URL).mock(return_value=token())
    mock.get(DEVICES_URL).mock(
        return_value=httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "bad"}})
    )
    with pytest.raises(VendorAuthError):
        make().fetch_agents()
    assert token_route.call_count == 1
