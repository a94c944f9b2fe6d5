"""The ``devices``, ``attrs`` and ``audit`` commands, run through typer's CliRunner on a real database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.timefmt import format_rfc3339, parse_rfc3339
from app.db import Database, audit
from app.tailnet.builtin import BuiltinTailnet
from tests.clitools import Run, cli_environment, failed, invoker, ok

REPO = Path(__file__).resolve().parents[2]

DEVICES = [
    {
        "id": "1001",
        "nodeId": "nLAPTOP1CNTRL",
        "name": "laptop.tail1234.ts.net",
        "hostname": "alices-mbp",
        "user": "alice@example.com",
        "os": "macOS",
        "addresses": ["100.64.0.1"],
        "lastSeen": "2026-11-21T11:00:00Z",
        "postureIdentity": {"serialNumbers": ["C02ABC"], "disabled": False},
    },
    {
        "id": "1002",
        "nodeId": "nSERVER1CNTRL",
        "name": "db-1.tail1234.ts.net",
        "hostname": "db-1",
        "user": "bob@example.com",
        "os": "linux",
        "tags": ["tag:prod"],
        "postureIdentity": {"disabled": True},
    },
]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    """Run ``accessbot ARGS`` in-process against this test's database, on the frozen clock."""
    cli_environment(monkeypatch, tmp_path, db_url)
    return invoker(monkeypatch, clock)


def import_devices(run: Run, tmp_path: Path, devices: Any = None) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": DEVICES if devices is None else devices}))
    ok(run("devices", "import", str(path)))


def attrs_json(run: Run, device: str) -> dict[str, Any]:
    return json.loads(ok(run("attrs", "get", device, "--json")))


def audit_lines(run: Run, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(run("audit", "--json", *args)).splitlines()]


# -- devices -----------------------------------------------------------------------------------------


def test_add_prints_generated_ids_and_stores_the_device(run: Run, db: Database) -> None:
    out = ok(
        run(
            "devices",
            "add",
            "--name",
            "laptop.tail1234.ts.net",
            "--user",
            "alice@example.com",
            "--os",
            "macOS",
            "--tag",
            "tag:dev",
            "--tag",
            "tag:laptop",
            "--serial",
            "C02ABC",
            "--serial",
            "BOARD1",
            "--address",
            "100.64.0.7",
        )
    )
    device_id = re.search(r"^id:\s+(\d+)$", out, re.M)
    node_id = re.search(r"^nodeId:\s+(n\w+CNTRL)$", out, re.M)
    assert device_id and node_id, out
    stored = BuiltinTailnet(db).get_device(node_id.group(1))
    assert stored.id == device_id.group(1)
    assert stored.hostname == "laptop"
    assert stored.tags == ("tag:dev", "tag:laptop")
    assert stored.serial_numbers == ("C02ABC", "BOARD1")
    assert stored.addresses == ("100.64.0.7",)
    assert [e.actor for e in audit_events(db, "Add device")] == ["cli:tester"]


def audit_events(db: Database, action: str) -> list[audit.AuditEvent]:
    with db.session() as session:
        return audit.query(session, action=action)


def test_add_json_prints_the_device_in_api_shape(run: Run) -> None:
    out = ok(run("devices", "add", "--name", "srv", "--user", "ops@example.com", "--hostname", "srv-1", "--json"))
    device = json.loads(out)
    assert re.fullmatch(r"\d{16}", device["id"])
    assert re.fullmatch(r"n\w{10}CNTRL", device["nodeId"])
    # a bare name becomes the MagicDNS name <name>.<tailnet name> (the built-in tailnet is example.com here)
    assert (device["name"], device["hostname"], device["user"]) == ("srv.example.com", "srv-1", "ops@example.com")
    assert device["postureIdentity"] == {"serialNumbers": [], "disabled": False}
    assert "tags" not in device


def test_add_rejects_a_bad_tag(run: Run, db: Database) -> None:
    failed(run("devices", "add", "--name", "x", "--user", "u@x", "--tag", "prod"), "tag:name")
    assert BuiltinTailnet(db).list_devices() == []


def test_list_shows_a_table_and_api_json(run: Run, tmp_path: Path) -> None:
    assert "no devices" in ok(run("devices", "list"))
    import_devices(run, tmp_path)
    table = ok(run("devices", "list"))
    for text in (
        "laptop.tail1234.ts.net",
        "1001",
        "nLAPTOP1CNTRL",
        "alice@example.com",
        "macOS",
        "C02ABC",
        "2026-11-21T11:00:00Z",
        "db-1.tail1234.ts.net",
        "nSERVER1CNTRL",
        "tag:prod",
    ):
        assert text in table, text
    listed = json.loads(ok(run("devices", "list", "--json")))
    assert [d["id"] for d in listed["devices"]] == ["1002", "1001"]  # ordered by name
    laptop, server = listed["devices"][1], listed["devices"][0]
    assert laptop["postureIdentity"] == {"serialNumbers": ["C02ABC"], "disabled": False}
    assert laptop["lastSeen"] == "2026-11-21T11:00:00Z"
    assert laptop["addresses"] == ["100.64.0.1"]
    assert server["postureIdentity"] == {"disabled": True}
    assert server["tags"] == ["tag:prod"]


def test_import_creates_then_updates(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": DEVICES}))
    assert ok(run("devices", "import", str(path))).strip() == "2 created, 0 updated"

    changed = [dict(DEVICES[0], user="carol@example.com"), DEVICES[1]]
    new = {"id": "1003", "nodeId": "nPHONE01CNTRL", "name": "phone.tail1234.ts.net", "os": "iOS"}
    out = ok(run("devices", "import", "-", input=json.dumps([*changed, new])))  # a bare list, on stdin
    assert out.strip() == "1 created, 2 updated"

    listed = {d["id"]: d for d in json.loads(ok(run("devices", "list", "--json")))["devices"]}
    assert sorted(listed) == ["1001", "1002", "1003"]
    assert listed["1001"]["user"] == "carol@example.com"
    assert listed["1003"]["hostname"] == "phone"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('{"devices": [', ["devices.json", "invalid JSON", "line 1"]),
        ('"hello"', ["devices.json", "expected a list of devices"]),
        ('{"items": []}', ["devices.json", '"devices"']),
        (json.dumps([DEVICES[0], {"id": "9", "name": "x"}]), ["devices.json", "index 1", "nodeId"]),
        (json.dumps({"devices": [DEVICES[0], 42]}), ["devices.json", "index 1", "JSON object"]),
        (json.dumps([DEVICES[0], dict(DEVICES[1], id="1001")]), ["index 0 and 1", "id '1001'"]),
    ],
)
def test_import_errors_name_the_file_and_write_nothing(
    run: Run, tmp_path: Path, db: Database, content: str, fragments: list[str]
) -> None:
    path = tmp_path / "devices.json"
    path.write_text(content)
    failed(run("devices", "import", str(path)), *fragments)
    assert BuiltinTailnet(db).list_devices() == []
    assert audit_events(db, "Import devices") == []


def test_import_of_a_missing_file_fails_clearly(run: Run, tmp_path: Path) -> None:
    failed(run("devices", "import", str(tmp_path / "nope.json")), "nope.json", "cannot read")


def test_device_writes_refuse_when_tailscale_is_configured(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: Database
) -> None:
    monkeypatch.setenv("TAILSCALE_API_KEY", "tskey-api-test")
    failed(run("devices", "add", "--name", "x", "--user", "u@x"), "real tailnet")
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(DEVICES))
    failed(run("devices", "import", str(path)), "real tailnet")
    assert BuiltinTailnet(db).list_devices() == []


# -- attrs -------------------------------------------------------------------------------------------


def test_set_get_delete_with_each_value_type(run: Run, tmp_path: Path, db: Database) -> None:
    import_devices(run, tmp_path)
    assert attrs_json(run, "1001") == {"attributes": {"node:os": "macos"}}
    table = ok(run("attrs", "get", "1001"))
    assert re.search(r"node:os\s*│\s*macos\s*│\s*string\s*│\s*never", table), table
    assert "has no attributes" not in table

    assert "(boolean)" in ok(run("attrs", "set", "1001", "custom:prodAccess", "true"))
    assert "(number)" in ok(run("attrs", "set", "1001", "custom:level", "--", "-42"))
    assert "(string)" in ok(run("attrs", "set", "1001", "custom:team", "platform.ops"))
    assert "(string)" in ok(run("attrs", "set", "1001", "custom:code", "007", "--string"))
    ok(run("attrs", "set", "1001", "custom:onCall", "false", "--comment", "rotation ended"))

    assert attrs_json(run, "1001") == {
        "attributes": {
            "node:os": "macos",
            "custom:code": "007",
            "custom:level": -42,
            "custom:onCall": False,
            "custom:prodAccess": True,
            "custom:team": "platform.ops",
        }
    }
    table = ok(run("attrs", "get", "1001"))
    assert re.search(r"custom:prodAccess\s*│\s*true\s*│\s*boolean\s*│\s*never", table), table
    assert re.search(r"custom:level\s*│\s*-42\s*│\s*number", table), table
    assert re.search(r"custom:code\s*│\s*007\s*│\s*string", table), table

    ok(run("attrs", "delete", "1001", "custom:level", "--comment", "not needed"))
    assert "custom:level" not in attrs_json(run, "1001")["attributes"]
    failed(run("attrs", "delete", "1001", "custom:level"), "custom:level", "not set")

    writes = audit_events(db, "Update node attribute")
    assert [(e.actor, e.new_value) for e in writes][:5] == [
        ("cli:tester", True),
        ("cli:tester", -42),
        ("cli:tester", "platform.ops"),
        ("cli:tester", "007"),
        ("cli:tester", False),
    ]
    assert writes[4].comment == "rotation ended"
    assert (writes[5].old_value, writes[5].new_value, writes[5].comment) == (-42, None, "not needed")


def test_expiry_is_shown_and_the_attribute_disappears_once_passed(
    run: Run, tmp_path: Path, clock: FrozenClock, db: Database
) -> None:
    import_devices(run, tmp_path)
    start = clock()
    out = ok(run("attrs", "set", "laptop", "custom:prodAccess", "true", "--expiry", "1m"))
    assert "(in 1m)" in out

    assert attrs_json(run, "laptop") == {
        "attributes": {"node:os": "macos", "custom:prodAccess": True},
        "expiries": {"custom:prodAccess": format_rfc3339(start + timedelta(minutes=1))},
    }
    clock.advance(seconds=30)
    table = ok(run("attrs", "get", "laptop"))
    assert f"{format_rfc3339(start + timedelta(minutes=1))} (in 30s)" in table

    clock.advance(seconds=31)
    assert attrs_json(run, "laptop") == {"attributes": {"node:os": "macos"}}
    expired = [e for e in audit_events(db, "Update node attribute") if e.actor == "system:expiry"]
    assert [(e.old_value, e.new_value, e.at) for e in expired] == [(True, None, start + timedelta(minutes=1))]


def test_expiry_accepts_an_rfc3339_time(run: Run, tmp_path: Path, clock: FrozenClock) -> None:
    import_devices(run, tmp_path)
    when = format_rfc3339(clock() + timedelta(hours=2))
    ok(run("attrs", "set", "1001", "custom:prodAccess", "true", "--expiry", when))
    assert attrs_json(run, "1001")["expiries"] == {"custom:prodAccess": when}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["custom:" + "a" * 44, "true"], ["51 characters", "at most 50"]),
        (["huntress:firewallStatus", "Enabled"], ["huntress:firewallStatus", "custom: namespace"]),
        (["custom:level", "1.5"], ["1.5", "not an integer", "--string"]),
        (["custom:team", "platform ops"], ["' '", "only letters, digits"]),
        (["custom:prodAccess", "true", "--expiry", "2020-01-01T00:00:00Z"], ["not in the future"]),
        (["custom:prodAccess", "true", "--expiry", "soon"], ["--expiry", "'soon'"]),
        (["custom:prodAccess", "true", "--expiry", "99999999999d"], ["--expiry"]),
        (["custom:prodAccess", "true", "--comment", "x" * 201], ["comment", "at most 200"]),
    ],
)
def test_rule_violations_fail_and_write_nothing(
    run: Run, tmp_path: Path, db: Database, args: list[str], fragments: list[str]
) -> None:
    import_devices(run, tmp_path)
    failed(run("attrs", "set", "1001", *args), *fragments)
    assert attrs_json(run, "1001") == {"attributes": {"node:os": "macos"}}
    assert audit_events(db, "Update node attribute") == []


def test_a_key_keeps_its_first_type(run: Run, tmp_path: Path) -> None:
    import_devices(run, tmp_path)
    ok(run("attrs", "set", "1001", "custom:level", "3"))
    failed(run("attrs", "set", "1002", "custom:level", "high"), "number", "string")
    failed(run("attrs", "set", "1002", "custom:LEVEL", "4"), "custom:level", "regardless of case")
    assert attrs_json(run, "1002") == {"attributes": {"node:os": "linux"}}


@pytest.mark.parametrize("ref", ["1001", "nLAPTOP1CNTRL", "laptop.tail1234.ts.net", "laptop", "LAPTOP", "alices-mbp"])
def test_device_by_id_node_id_name_or_hostname(run: Run, tmp_path: Path, ref: str) -> None:
    import_devices(run, tmp_path)
    assert "laptop.tail1234.ts.net (1001)" in ok(run("attrs", "set", ref, "custom:x", "1"))
    assert attrs_json(run, ref) == {"attributes": {"node:os": "macos", "custom:x": 1}}
    ok(run("attrs", "delete", ref, "custom:x"))
    assert attrs_json(run, "1001") == {"attributes": {"node:os": "macos"}}


def test_unknown_and_ambiguous_devices(run: Run, tmp_path: Path) -> None:
    twins = [
        {"id": "1", "nodeId": "nTWIN1CNTRL", "name": "build.tail1234.ts.net", "hostname": "build"},
        {"id": "2", "nodeId": "nTWIN2CNTRL", "name": "build-1.tail1234.ts.net", "hostname": "build"},
    ]
    import_devices(run, tmp_path, twins)
    failed(run("attrs", "get", "nosuch"), "no device", "'nosuch'")
    failed(run("attrs", "set", "build", "custom:x", "1"), "matches 2 devices", "(1)", "(2)")
    failed(run("attrs", "get", "[/]"), "'[/]'")  # rich markup in a message is printed, not interpreted
    assert attrs_json(run, "build-1") == {"attributes": {}}


# -- audit -------------------------------------------------------------------------------------------


def test_audit_shows_sets_and_expiries_and_filters(run: Run, tmp_path: Path, clock: FrozenClock) -> None:
    start = clock()
    import_devices(run, tmp_path)
    ok(run("attrs", "set", "1001", "custom:prodAccess", "true", "--expiry", "1m", "--comment", "jit"))
    clock.advance(hours=2)
    ok(run("attrs", "set", "1002", "custom:level", "7"))

    events = audit_lines(run)  # also purges the expired attribute, so its expiry is in the log
    assert [(e["action"], e["actor"]) for e in events] == [
        ("Import devices", "cli:tester"),
        ("Update node attribute", "cli:tester"),
        ("Update node attribute", "system:expiry"),
        ("Update node attribute", "cli:tester"),
    ]
    set_event, expiry_event = events[1], events[2]
    assert set_event["target"] == "device/1001/attributes/custom:prodAccess"
    assert (set_event["old"], set_event["new"], set_event["comment"]) == (None, True, "jit")
    assert set_event["expiry"] == format_rfc3339(start + timedelta(minutes=1))
    assert set_event["time"] == format_rfc3339(start)
    assert (expiry_event["old"], expiry_event["new"]) == (True, None)
    assert parse_rfc3339(expiry_event["time"]) == start + timedelta(minutes=1)

    assert [e["actor"] for e in audit_lines(run, "--action", "update NODE attribute")] == [
        "cli:tester",
        "system:expiry",
        "cli:tester",
    ]
    assert [e["action"] for e in audit_lines(run, "--action", "Import devices")] == ["Import devices"]
    assert [e["new"] for e in audit_lines(run, "--since", "1h")] == [7]
    assert len(audit_lines(run, "--since", format_rfc3339(start + timedelta(seconds=30)))) == 2
    assert [e["actor"] for e in audit_lines(run, "--actor", "system:expiry")] == ["system:expiry"]
    # --limit keeps the newest events, still in time order
    assert [(e["actor"], e["new"]) for e in audit_lines(run, "--limit", "2")] == [
        ("system:expiry", None),
        ("cli:tester", 7),
    ]

    table = ok(run("audit", "--action", "Update node attribute"))
    expiry_row = r"system:expiry\s*│\s*Update node attribute\s*│\s*device/1001/attributes/custom:prodAccess"
    assert re.search(expiry_row + r"\s*│\s*true → ∅", table), table
    assert re.search(r"∅ → true\s*│\s*2026-11-21T12:01:00Z\s*│\s*jit", table), table


def test_audit_rejects_a_bad_since(run: Run) -> None:
    failed(run("audit", "--since", "yesterday"), "--since", "'yesterday'")
    assert ok(run("audit")).strip() == "no audit events"
    assert ok(run("audit", "--json")) == ""


# -- the real console script ---------------------------------------------------------------------------


def test_done_when_sequence_in_a_subprocess(db_url: str, db: Database, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILSCALE_") and k != "ACCESSBOT_CONFIG"}
    env.update(DATABASE_URL=db_url, PYTHONPATH=str(REPO))

    def accessbot(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = accessbot("devices", "add", "--name", "laptop.tail1234.ts.net", "--user", "alice@example.com")
    match = re.search(r"^id:\s+(\d+)$", out, re.M)
    assert match, out
    device = match.group(1)
    accessbot("attrs", "set", device, "custom:prodAccess", "true", "--expiry", "1m")
    shown = json.loads(accessbot("attrs", "get", device, "--json"))
    assert shown["attributes"] == {"custom:prodAccess": True}
    expiry = parse_rfc3339(shown["expiries"]["custom:prodAccess"])
    (event,) = audit_events(db, "Update node attribute")
    assert event.expiry is not None
    assert format_rfc3339(event.expiry) == shown["expiries"]["custom:prodAccess"]
    assert timedelta(seconds=58) <= expiry - event.at <= timedelta(seconds=60)


def test_audit_purges_expired_attributes_first(run: Run, tmp_path: Path, clock: FrozenClock) -> None:
    import_devices(run, tmp_path)
    ok(run("attrs", "set", "1001", "custom:prodAccess", "true", "--expiry", "1m"))
    assert audit_lines(run, "--actor", "system:expiry") == []
    clock.advance(minutes=5)
    (event,) = audit_lines(run, "--actor", "system:expiry")  # no other command ran in between
    assert event["target"] == "device/1001/attributes/custom:prodAccess"
    assert event["time"] == format_rfc3339(clock() - timedelta(minutes=4))
