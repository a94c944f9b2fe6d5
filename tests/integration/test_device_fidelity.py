"""Device JSON of the built-in HTTP API as Tailscale returns it, and its server-side list filters.

Shapes from Tailscale's OpenAPI document (tailscale/tailscale-client-go-v2, tools/openapi/spec): the default view is
``components/parameters/fields``' list, ``fields=all`` adds routes, ``clientConnectivity``, ``postureIdentity``,
``sshEnabled`` and ``distro``; filters are ``<field>=<value>`` on top-level properties, ANDed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.core.clock import FrozenClock
from app.core.timefmt import format_rfc3339, parse_rfc3339
from app.db import Database
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.devicejson import DEFAULT_FIELDS, FIELDS_ALL_ONLY
from app.tailnet.models import Actor, Device
from tests.serving import serving

ADMIN = Actor("cli:admin")

TYPES: dict[str, type | tuple[type, ...]] = {
    "addresses": list,
    "id": str,
    "nodeId": str,
    "user": str,
    "name": str,
    "hostname": str,
    "clientVersion": str,
    "updateAvailable": bool,
    "os": str,
    "created": str,
    "connectedToControl": bool,
    "lastSeen": str,
    "keyExpiryDisabled": bool,
    "expires": str,
    "authorized": bool,
    "isExternal": bool,
    "machineKey": str,
    "nodeKey": str,
    "blocksIncomingConnections": bool,
    "tailnetLockKey": str,
    "tailnetLockError": str,
    "tags": list,
    "isEphemeral": bool,
    "enabledRoutes": list,
    "advertisedRoutes": list,
    "clientConnectivity": dict,
    "postureIdentity": dict,
    "sshEnabled": bool,
    "distro": dict,
}
"""JSON type of every device field (OpenAPI ``components/schemas/Device``)."""

IMPORTED: dict[str, Any] = {
    "id": "5001",
    "nodeId": "nIMPORT1CNTRL",
    "name": "build.tail1234.ts.net",
    "hostname": "build",
    "user": "ci@example.com",
    "os": "linux",
    "tags": ["tag:ci", "tag:prod"],
    "addresses": ["100.100.1.1", "fd7a:115c:a1e0::1"],
    "clientVersion": "1.76.1-t1234",
    "created": "2026-01-02T03:04:05.678Z",
    "expires": "2026-07-01T03:04:05.678Z",
    "keyExpiryDisabled": False,
    "authorized": True,
    "isEphemeral": True,
    "lastSeen": "2026-11-30T10:00:00Z",
    "sshEnabled": True,
    "distro": {"name": "ubuntu", "version": "24.04", "codeName": "noble"},
    "enabledRoutes": ["10.0.0.0/16"],
    "advertisedRoutes": ["10.0.0.0/16"],
    "postureIdentity": {"serialNumbers": ["SRV1"], "disabled": False},
}


@pytest.fixture
def client(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> Iterator[httpx.Client]:
    key = AuthStore(db, clock=clock).create_api_key(actor=ADMIN, description="tests")[1]
    with serving(make_api(builtin, db, clock=clock)) as url, httpx.Client(base_url=url, auth=(key, "")) as http:
        yield http


@pytest.fixture
def by_hand(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="laptop", user="alice@example.com", os="macOS", actor=ADMIN)


@pytest.fixture
def tagged(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(
        name="db-1", user="ops@example.com", os="linux", tags=["tag:prod"], addresses=["100.64.0.9"], actor=ADMIN
    )


@pytest.fixture
def imported(builtin: BuiltinTailnet) -> Device:
    builtin.import_devices([IMPORTED], actor=ADMIN)
    return builtin.get_device("5001")


def device_json(client: httpx.Client, device: Device, fields: str | None = None) -> dict[str, Any]:
    params = {"fields": fields} if fields else {}
    response = client.get(f"/api/v2/device/{device.node_id}", params=params)
    assert response.status_code == 200, response.text
    listed = client.get("/api/v2/tailnet/-/devices", params=params).json()["devices"]
    assert [d for d in listed if d["id"] == device.id] == [response.json()]  # one shape in the list and alone
    return response.json()


def assert_types(data: dict[str, Any]) -> None:
    for field, value in data.items():
        assert isinstance(value, TYPES[field]), (field, value)


# -- every field, with its type, however the device got in ----------------------------------------------


@pytest.mark.parametrize("which", ["by_hand", "tagged", "imported"])
def test_default_view_has_every_default_field_and_no_other(
    client: httpx.Client, request: pytest.FixtureRequest, which: str
) -> None:
    device: Device = request.getfixturevalue(which)
    data = device_json(client, device)
    expected = set(DEFAULT_FIELDS)
    if not device.tags:
        expected.discard("tags")  # Tailscale omits tags of an untagged device
    if device.last_seen is None:
        expected.discard("lastSeen")  # and lastSeen of one never seen
    assert set(data) == expected
    assert_types(data)
    assert data["authorized"] is True  # the Go client's `if !d.Authorized { continue }` keeps it


@pytest.mark.parametrize("which", ["by_hand", "tagged", "imported"])
def test_fields_all_adds_the_all_only_fields(client: httpx.Client, request: pytest.FixtureRequest, which: str) -> None:
    device: Device = request.getfixturevalue(which)
    data = device_json(client, device, "all")
    default = device_json(client, device)
    assert set(default) < set(data)
    expected_extra = {f for f in FIELDS_ALL_ONLY if f not in ("distro", "multipleConnections")}
    assert expected_extra <= set(data) - set(default)
    assert_types(data)


def test_imported_all_only_fields_stay_out_of_the_default_view(client: httpx.Client, imported: Device) -> None:
    default = device_json(client, imported)
    for field in ("sshEnabled", "distro", "enabledRoutes", "advertisedRoutes", "postureIdentity"):
        assert field not in default
    every = device_json(client, imported, "all")
    assert every["sshEnabled"] is True
    assert every["distro"] == IMPORTED["distro"]
    assert every["enabledRoutes"] == ["10.0.0.0/16"]
    assert every["postureIdentity"] == {"serialNumbers": ["SRV1"], "disabled": False}


def test_imported_values_are_kept_with_their_milliseconds(client: httpx.Client, imported: Device) -> None:
    data = device_json(client, imported)
    assert (data["created"], data["expires"]) == (IMPORTED["created"], IMPORTED["expires"])
    assert (data["isEphemeral"], data["keyExpiryDisabled"]) == (True, False)
    assert data["name"] == "build.tail1234.ts.net"


def test_a_device_added_by_hand_gets_tailscale_defaults(
    client: httpx.Client, by_hand: Device, clock: FrozenClock
) -> None:
    data = device_json(client, by_hand)
    assert data["name"] == "laptop.example.com"  # <host>.<tailnet name>
    assert data["hostname"] == "laptop"
    assert data["created"] == format_rfc3339(clock())
    assert data["keyExpiryDisabled"] is False
    assert parse_rfc3339(data["expires"]) == parse_rfc3339(data["created"]) + timedelta(days=180)
    assert re.fullmatch(r"mkey:[0-9a-f]{64}", data["machineKey"])
    assert re.fullmatch(r"nodekey:[0-9a-f]{64}", data["nodeKey"])
    assert re.fullmatch(r"nlpub:[0-9a-f]{64}", data["tailnetLockKey"])
    assert data["machineKey"][5:] != data["nodeKey"][8:]
    assert (data["updateAvailable"], data["isExternal"], data["isEphemeral"]) == (False, False, False)
    assert (data["blocksIncomingConnections"], data["connectedToControl"], data["tailnetLockError"]) == (
        False,
        False,
        "",
    )
    assert device_json(client, by_hand) == data  # stable across reads


def test_a_tagged_device_never_expires(client: httpx.Client, tagged: Device) -> None:
    data = device_json(client, tagged)
    assert data["keyExpiryDisabled"] is True
    assert data["expires"] == "0001-01-01T00:00:00Z"
    assert data["tags"] == ["tag:prod"]
    assert data["addresses"] == ["100.64.0.9"]


def test_a_device_stored_before_these_fields_gets_derived_ones(
    client: httpx.Client, builtin: BuiltinTailnet, db: Database
) -> None:
    builtin.import_devices([{"id": "7001", "nodeId": "nOLD1CNTRL", "name": "old.example.com"}], actor=ADMIN)
    data = device_json(client, builtin.get_device("7001"))
    assert set(data) == set(DEFAULT_FIELDS) - {"tags", "lastSeen"}
    assert_types(data)
    assert data["machineKey"] == device_json(client, builtin.get_device("7001"))["machineKey"]
    assert re.fullmatch(r"mkey:[0-9a-f]{64}", data["machineKey"])


# -- filters ------------------------------------------------------------------------------------------------


def listed(client: httpx.Client, query: str) -> list[str]:
    response = client.get(f"/api/v2/tailnet/-/devices?{query}")
    assert response.status_code == 200, response.text
    return sorted(d["hostname"] for d in response.json()["devices"])


@pytest.fixture
def fleet(by_hand: Device, tagged: Device, imported: Device) -> None:
    return None


@pytest.mark.usefixtures("fleet")
@pytest.mark.parametrize(
    ("query", "hostnames"),
    [
        ("", ["build", "db-1", "laptop"]),
        ("os=linux", ["build", "db-1"]),
        ("os=Linux", []),  # exact match
        ("tags=tag:prod", ["build", "db-1"]),
        ("tags=tag:prod&tags=tag:ci", ["build"]),  # a repeated list filter: contains both
        ("os=linux&isEphemeral=false", ["db-1"]),  # AND across fields
        ("isEphemeral=true", ["build"]),
        ("keyExpiryDisabled=true", ["db-1"]),
        ("authorized=true", ["build", "db-1", "laptop"]),
        ("user=alice@example.com", ["laptop"]),
        ("hostname=laptop&os=linux", []),
        ("addresses=100.64.0.9", ["db-1"]),
        ("nodeId=nIMPORT1CNTRL", ["build"]),
        ("fields=all&os=macOS", ["laptop"]),  # fields is not a filter
        ("noSuchField=1", []),  # a property no device has matches none: 200, empty
        ("clientConnectivity=x", []),  # complex objects are not filterable
        ("os=", []),
    ],
)
def test_list_filters(client: httpx.Client, query: str, hostnames: list[str]) -> None:
    assert listed(client, query) == hostnames


@pytest.mark.usefixtures("fleet")
def test_filtered_list_keeps_the_asked_view(client: httpx.Client) -> None:
    default = client.get("/api/v2/tailnet/-/devices?os=linux").json()["devices"]
    every = client.get("/api/v2/tailnet/-/devices?os=linux&fields=all").json()["devices"]
    assert all("sshEnabled" not in d for d in default)
    assert all("sshEnabled" in d for d in every)
