"""The read-only ``node:`` attributes the built-in tailnet derives from a device record.

Like Tailscale's ``GET /device/{id}/attributes``, the built-in store reports ``node:os``, ``node:tsVersion`` and
``node:tsReleaseTrack`` from the device's os and clientVersion, and ``node:osVersion``, ``node:tsAutoUpdate`` and
``node:tsStateEncrypted`` from an imported device's JSON; nobody may write or delete them. Checked through the
store, the real HTTP server, and the CLI.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.clock import FrozenClock
from app.core.timefmt import format_rfc3339
from app.db import Database, audit
from app.db.audit import AuditAction
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import RuleViolation
from app.tailnet.models import Actor, AttributeSet, AttributeWrite, Device
from app.tailnet.node_attributes import node_os
from app.web.server import make_server
from tests.clitools import cli_environment, invoker

ADMIN = Actor("cli:admin")
NODE_KEYS = ["node:os", "node:osVersion", "node:tsVersion", "node:tsReleaseTrack", "node:tsAutoUpdate"]

WORKSTATION: dict[str, Any] = {
    "id": "2001",
    "nodeId": "nWORKST1CNTRL",
    "name": "ws-1.tail1234.ts.net",
    "hostname": "ws-1",
    "user": "carol@example.com",
    "os": "windows",
    "osVersion": "10.0.22631.4602",
    "clientVersion": "1.74.0-t1a2b3c4d5-g6e7f8a9b0",
    "autoUpdate": True,
    "tsStateEncrypted": False,
}
WORKSTATION_NODE = {
    "node:os": "windows",
    "node:osVersion": "10.0.22631.4602",
    "node:tsAutoUpdate": True,
    "node:tsReleaseTrack": "stable",
    "node:tsStateEncrypted": False,
    "node:tsVersion": "1.74.0",
}
BARE: dict[str, Any] = {"id": "2002", "nodeId": "nBARE001CNTRL", "name": "bare.tail1234.ts.net"}


def update_events(db: Database) -> list[audit.AuditEvent]:
    with db.session() as session:
        return audit.query(session, action=AuditAction.UPDATE_NODE_ATTRIBUTE)


# -- derived from the device record -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_name", "client_version", "expected"),
    [
        (
            "macOS",
            "1.76.1-t123-gabc",
            {"node:os": "macos", "node:tsVersion": "1.76.1", "node:tsReleaseTrack": "stable"},
        ),
        ("linux", "1.77.2", {"node:os": "linux", "node:tsVersion": "1.77.2", "node:tsReleaseTrack": "unstable"}),
        ("iOS", "v1.80", {"node:os": "ios", "node:tsVersion": "1.80", "node:tsReleaseTrack": "stable"}),
        ("windows", "", {"node:os": "windows"}),
        ("", "1.76.1", {"node:tsVersion": "1.76.1", "node:tsReleaseTrack": "stable"}),
        ("android", "not-a-version", {"node:os": "android"}),
    ],
)
def test_added_device_reports_os_and_client_version(
    builtin: BuiltinTailnet, actor: Actor, os_name: str, client_version: str, expected: dict[str, Any]
) -> None:
    device = builtin.add_device(
        name="dev.tail1.ts.net", user="u@example.com", os=os_name, client_version=client_version, actor=actor
    )
    assert builtin.get_attributes(device.id) == AttributeSet(expected, {})
    assert builtin.get_attributes(device.node_id) == AttributeSet(expected, {})


def test_node_attributes_sit_beside_written_ones_sorted_and_never_expire(
    builtin: BuiltinTailnet, actor: Actor, clock: FrozenClock
) -> None:
    device = builtin.add_device(name="mac", user="u@example.com", os="macOS", client_version="1.76.1", actor=actor)
    expiry = clock() + timedelta(hours=1)
    builtin.set_attribute(device.id, "custom:prodAccess", True, actor=actor, expiry=expiry)
    builtin.set_attribute(device.id, "custom:tier", 2, actor=actor)
    got = builtin.get_attributes(device.id)
    assert list(got.attributes.items()) == [
        ("custom:prodAccess", True),
        ("custom:tier", 2),
        ("node:os", "macos"),
        ("node:tsReleaseTrack", "stable"),
        ("node:tsVersion", "1.76.1"),
    ]
    assert got.expiries == {"custom:prodAccess": expiry}
    clock.advance(hours=2)
    assert builtin.get_attributes(device.id) == AttributeSet(
        {"custom:tier": 2, "node:os": "macos", "node:tsReleaseTrack": "stable", "node:tsVersion": "1.76.1"}, {}
    )


def test_import_keeps_os_version_auto_update_and_state_encryption(builtin: BuiltinTailnet, actor: Actor) -> None:
    assert builtin.import_devices([WORKSTATION], actor=actor) == (1, 0)
    assert builtin.get_attributes("2001") == AttributeSet(WORKSTATION_NODE, {})


def test_reimport_updates_them_and_drops_what_is_gone(builtin: BuiltinTailnet, actor: Actor) -> None:
    builtin.import_devices([WORKSTATION], actor=actor)
    upgraded = dict(
        WORKSTATION,
        os="linux",
        osVersion="6.8.0",
        clientVersion="1.75.1",
        autoUpdate=False,
        tsStateEncrypted=True,
    )
    assert builtin.import_devices([upgraded], actor=actor) == (0, 1)
    assert builtin.get_attributes("2001").attributes == {
        "node:os": "linux",
        "node:osVersion": "6.8.0",
        "node:tsAutoUpdate": False,
        "node:tsReleaseTrack": "unstable",
        "node:tsStateEncrypted": True,
        "node:tsVersion": "1.75.1",
    }
    stripped = {k: v for k, v in upgraded.items() if k not in ("osVersion", "autoUpdate", "tsStateEncrypted")}
    assert builtin.import_devices([stripped], actor=actor) == (0, 1)
    assert builtin.get_attributes("2001").attributes == {
        "node:os": "linux",
        "node:tsReleaseTrack": "unstable",
        "node:tsVersion": "1.75.1",
    }


@pytest.mark.parametrize(("raw_key", "value"), [("autoUpdate", True), ("tsAutoUpdate", True), ("tsAutoUpdate", False)])
def test_ts_auto_update_is_read_under_either_name(
    builtin: BuiltinTailnet, actor: Actor, raw_key: str, value: bool
) -> None:
    builtin.import_devices([{**BARE, raw_key: value}], actor=actor)
    assert builtin.get_attributes("2002") == AttributeSet({"node:tsAutoUpdate": value}, {})


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"os": "", "clientVersion": "", "osVersion": ""},
        {"os": "   ", "osVersion": "   ", "clientVersion": "unknown"},
        {"autoUpdate": "yes", "tsAutoUpdate": 1, "tsStateEncrypted": None, "osVersion": 14},
    ],
)
def test_absent_when_the_record_has_no_data(builtin: BuiltinTailnet, actor: Actor, extra: dict[str, Any]) -> None:
    builtin.import_devices([dict(BARE, **extra)], actor=actor)
    assert builtin.get_attributes("2002") == AttributeSet({}, {})


def test_added_device_without_os_or_client_version_has_none(builtin: BuiltinTailnet, actor: Actor) -> None:
    device = builtin.add_device(name="plain", user="u@example.com", actor=actor)
    assert builtin.get_attributes(device.id) == AttributeSet({}, {})


# -- read-only through the store ----------------------------------------------------------------------


@pytest.mark.parametrize("writer", [Actor("cli:tester"), Actor.system("sneaky", "node")])
@pytest.mark.parametrize("key", [*NODE_KEYS, "node:tsStateEncrypted", "node:somethingNew"])
def test_builtin_refuses_to_write_or_delete_a_node_key(
    builtin: BuiltinTailnet, db: Database, writer: Actor, key: str
) -> None:
    builtin.import_devices([WORKSTATION], actor=ADMIN)
    attempts = [
        lambda: builtin.set_attribute("2001", key, "x", actor=writer),
        lambda: builtin.set_attribute("2001", key, True, actor=writer),
        lambda: builtin.delete_attribute("2001", key, actor=writer),
        lambda: builtin.set_many({"2001": {key: AttributeWrite("x")}}, actor=writer),
        lambda: builtin.set_many({"2001": {key: None}}, actor=writer),
        lambda: builtin.set_many(
            {"2001": {"custom:fine": AttributeWrite(True), key: AttributeWrite("linux")}}, actor=writer
        ),
    ]
    for attempt in attempts:
        with pytest.raises(RuleViolation) as caught:
            attempt()
        assert caught.value.rule == "key_namespace"
        assert "read-only" in caught.value.message and key in caught.value.message
    assert builtin.get_attributes("2001") == AttributeSet(WORKSTATION_NODE, {})
    assert update_events(db) == []


# -- the HTTP API -------------------------------------------------------------------------------------


@pytest.fixture
def client(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> Iterator[httpx.Client]:
    server = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api_key = AuthStore(db, clock=clock).create_api_key(actor=ADMIN, description="node tests")[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", auth=(api_key, ""), timeout=10) as http:
            yield http
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def workstation(builtin: BuiltinTailnet) -> Device:
    builtin.import_devices([WORKSTATION], actor=ADMIN)
    return builtin.get_device("2001")


def message_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"message"}
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]


def test_api_get_attributes_reports_them_in_tailscales_shape(
    client: httpx.Client, workstation: Device, clock: FrozenClock
) -> None:
    path = f"/api/v2/device/{workstation.node_id}/attributes"
    assert client.get(path).json() == {"attributes": WORKSTATION_NODE}
    expiry = format_rfc3339(clock() + timedelta(hours=1))
    response = client.post(f"{path}/custom:prodAccess", json={"value": True, "expiry": expiry})
    assert response.status_code == 200
    assert client.get(path).json() == {
        "attributes": {**WORKSTATION_NODE, "custom:prodAccess": True},
        "expiries": {"custom:prodAccess": expiry},
    }


@pytest.mark.parametrize("key", ["node:os", "node%3AtsVersion", "node:tsAutoUpdate"])
def test_api_refuses_to_write_or_delete_a_node_key(
    client: httpx.Client, workstation: Device, db: Database, key: str
) -> None:
    path = f"/api/v2/device/{workstation.id}/attributes/{key}"
    shown = key.replace("%3A", ":")
    for response in (
        client.post(path, json={"value": "linux"}),
        client.post(path, json={"value": False, "comment": "force it"}),
        client.delete(path),
        client.patch("/api/v2/tailnet/-/device-attributes", json={"nodes": {workstation.id: {shown: {"value": "x"}}}}),
        client.patch("/api/v2/tailnet/-/device-attributes", json={"nodes": {workstation.id: {shown: None}}}),
    ):
        assert response.status_code == 400
        message = message_of(response)
        assert "read-only" in message and shown in message, message
    assert client.get(f"/api/v2/device/{workstation.id}/attributes").json() == {"attributes": WORKSTATION_NODE}
    assert update_events(db) == []


# -- the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Any:
    """Run ``accessbot ARGS`` in-process against this test's database, on the frozen clock."""
    cli_environment(monkeypatch, tmp_path, db_url)
    invoke = invoker(monkeypatch, clock)

    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": [WORKSTATION, BARE]}))
    imported = invoke("devices", "import", str(path))
    assert imported.exit_code == 0, imported.output
    return invoke


def test_cli_attrs_get_shows_them(run: Any) -> None:
    result = run("attrs", "get", "ws-1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"attributes": WORKSTATION_NODE}

    result = run("attrs", "set", "2001", "custom:prodAccess", "true", "--expiry", "1h")
    assert result.exit_code == 0, result.output
    result = run("attrs", "get", "nWORKST1CNTRL", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "attributes": {**WORKSTATION_NODE, "custom:prodAccess": True},
        "expiries": {"custom:prodAccess": "2026-11-21T13:00:00Z"},
    }

    table = run("attrs", "get", "ws-1").stdout
    assert re.search(r"node:os\s*│\s*windows\s*│\s*string\s*│\s*never", table), table
    assert re.search(r"node:osVersion\s*│\s*10\.0\.22631\.4602\s*│\s*string\s*│\s*never", table), table
    assert re.search(r"node:tsAutoUpdate\s*│\s*true\s*│\s*boolean\s*│\s*never", table), table
    assert re.search(r"node:tsStateEncrypted\s*│\s*false\s*│\s*boolean\s*│\s*never", table), table


def test_cli_device_without_data_still_has_no_attributes(run: Any) -> None:
    result = run("attrs", "get", "bare", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"attributes": {}}
    assert "bare.tail1234.ts.net (2002) has no attributes" in run("attrs", "get", "bare").stdout


@pytest.mark.parametrize("args", [["set", "2001", "node:os", "linux"], ["delete", "2001", "node:tsVersion"]])
def test_cli_refuses_to_write_or_delete_a_node_key(run: Any, db: Database, args: list[str]) -> None:
    result = run("attrs", *args)
    assert result.exit_code != 0, result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and "read-only" in line and args[2] in line, line
    assert json.loads(run("attrs", "get", "2001", "--json").stdout) == {"attributes": WORKSTATION_NODE}
    assert update_events(db) == []


# -- node_os ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_os", "expected"),
    [
        ("macOS", "macos"),
        ("macos", "macos"),
        ("MacOS", "macos"),
        ("Mac OS X", "macos"),
        ("darwin", "macos"),
        ("iOS", "ios"),
        ("iPadOS", "ios"),
        ("windows", "windows"),
        ("Windows", "windows"),
        ("linux", "linux"),
        (" Linux ", "linux"),
        ("android", "android"),
        ("freebsd", "freebsd"),
        ("openbsd", "openbsd"),
        ("illumos", "illumos"),
        ("js", "js"),
        ("", None),
        ("   ", None),
    ],
)
def test_node_os(device_os: str, expected: str | None) -> None:
    assert node_os(device_os) == expected
