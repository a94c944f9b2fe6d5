"""``accessbot devices add|import|remove``: strict input (one clear line per bad field), unique names, removal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.db import Database, audit
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.builtin_devices import add_row
from app.tailnet.models import Actor
from tests.clitools import Run, cli_environment, failed, invoker, ok

ADMIN = Actor("cli:admin")


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    return invoker(monkeypatch, clock)


def add(*extra: str, name: str = "laptop", user: str = "alice@example.com") -> tuple[str, ...]:
    return ("devices", "add", "--name", name, "--user", user, *extra)


def import_file(tmp_path: Path, devices: list[dict[str, Any]]) -> str:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": devices}))
    return str(path)


def base(**fields: Any) -> dict[str, Any]:
    return {"id": "1", "nodeId": "nONE1CNTRL", "name": "one.ts.net", "user": "u@example.com", **fields}


# -- add ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "user", "fragments"),
    [
        ((), "notanemail", ("user 'notanemail' is not an email address",)),
        (("--address", "999.1.1.1"), "a@example.com", ("999.1.1.1", "not an IPv4 or IPv6 address")),
        (("--address", "10.0.0.1"), "a@example.com", ("not a Tailscale address", "100.64.0.0/10")),
        (("--address", "2001:db8::1"), "a@example.com", ("fd7a:115c:a1e0::/48",)),
        (("--tag", "prod"), "a@example.com", ("tag:name", "'prod'")),
        (("--tag", "tag:"), "a@example.com", ("tag:name",)),
        (("--os", "beos"), "a@example.com", ("os 'beos'", "linux, windows, macos")),
    ],
)
def test_add_refuses_each_bad_field_with_one_line(
    run: Run, db: Database, extra: tuple[str, ...], user: str, fragments: tuple[str, ...]
) -> None:
    failed(run(*add(*extra, user=user)), *fragments)
    assert BuiltinTailnet(db).list_devices() == []


def test_add_accepts_tailscale_addresses_and_os_spellings(run: Run, db: Database) -> None:
    ok(run(*add("--address", "100.101.102.103", "--address", "fd7a:115c:a1e0::53", "--os", "macOS")))
    ok(run(*add("--os", "Windows", name="pc", user="creator@github")))  # GitHub logins look like this
    devices = {d.hostname: d for d in BuiltinTailnet(db).list_devices()}
    assert devices["laptop"].addresses == ("100.101.102.103", "fd7a:115c:a1e0::53")
    assert devices["pc"].user == "creator@github"


def test_add_refuses_a_duplicate_name_case_insensitively(run: Run, db: Database) -> None:
    ok(run(*add()))
    failed(run(*add(name="LAPTOP")), "'LAPTOP.example.com' already exists", "devices remove")
    failed(run(*add(name="laptop.example.com")), "already exists")
    assert len(BuiltinTailnet(db).list_devices()) == 1


def test_add_with_versions_feeds_node_attributes(run: Run, db: Database) -> None:
    ok(run(*add("--os", "macOS", "--client-version", "1.77.5", "--os-version", "14.5")))
    device = BuiltinTailnet(db).list_devices()[0]
    assert BuiltinTailnet(db).get_attributes(device.id).attributes == {
        "node:os": "macos",
        "node:osVersion": "14.5",
        "node:tsReleaseTrack": "unstable",
        "node:tsVersion": "1.77.5",
    }
    shown = json.loads(ok(run("devices", "list", "--json")))["devices"][0]
    assert "osVersion" not in shown  # the source of node:osVersion, not a device field


# -- import ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "fragments"),
    [
        (base(user=None), ("device at index 0", "user is null")),
        (base(user="nobody"), ("device at index 0", "not an email")),
        (base(addresses=["not-an-ip"]), ("device at index 0", "'not-an-ip' is not an IPv4 or IPv6")),
        (base(addresses="100.64.0.1"), ("addresses must be a list",)),
        (base(tags=["prod"]), ("tag:name",)),
        (base(tags="prod"), ("tag:name", "'prod'")),
        (base(os="plan9"), ("os 'plan9'",)),
        (base(name=""), ("device at index 0",)),
    ],
)
def test_import_refuses_bad_fields_and_writes_nothing(
    run: Run, tmp_path: Path, db: Database, device: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    good = base(id="2", nodeId="nTWO1CNTRL", name="two.ts.net")
    failed(run("devices", "import", import_file(tmp_path, [device, good])), *fragments)
    assert BuiltinTailnet(db).list_devices() == []


def test_import_takes_a_tag_string_as_one_tag(run: Run, tmp_path: Path, db: Database) -> None:
    ok(run("devices", "import", import_file(tmp_path, [base(tags="tag:x")])))
    assert BuiltinTailnet(db).get_device("1").tags == ("tag:x",)  # not t, a, g, :, x


def test_import_reports_names_held_twice(run: Run, tmp_path: Path, db: Database) -> None:
    twins = [base(), base(id="2", nodeId="nTWO1CNTRL", name="ONE.ts.net")]
    failed(run("devices", "import", import_file(tmp_path, twins)), "index 0 and 1", "same name")
    assert BuiltinTailnet(db).list_devices() == []
    BuiltinTailnet(db).add_device(name="one.ts.net", user="x@example.com", actor=ADMIN)
    failed(
        run("devices", "import", import_file(tmp_path, [base(id="3", nodeId="nTHREE1CNTRL")])),
        "unique",
        "one.ts.net",
        "nothing was imported",
    )
    assert [d.name for d in BuiltinTailnet(db).list_devices()] == ["one.ts.net"]


def test_import_makes_a_bare_name_a_magicdns_name_and_keeps_an_fqdn(run: Run, tmp_path: Path, db: Database) -> None:
    devices = [base(name="bare"), base(id="2", nodeId="nTWO1CNTRL", name="two.tail9.ts.net")]
    ok(run("devices", "import", import_file(tmp_path, devices)))
    assert sorted(d.name for d in BuiltinTailnet(db).list_devices()) == ["bare.example.com", "two.tail9.ts.net"]


def test_reimport_of_the_same_device_is_not_a_duplicate(run: Run, tmp_path: Path, db: Database) -> None:
    path = import_file(tmp_path, [base()])
    ok(run("devices", "import", path))
    assert "0 created, 1 updated" in ok(run("devices", "import", path))


# -- remove ----------------------------------------------------------------------------------------------------


def test_remove_takes_attributes_audits_and_moves_the_generation(run: Run, db: Database) -> None:
    store = BuiltinTailnet(db)
    laptop = store.add_device(name="laptop", user="a@example.com", os="linux", actor=ADMIN)
    other = store.add_device(name="other", user="b@example.com", actor=ADMIN)
    store.set_attribute(laptop.id, "custom:prodAccess", True, actor=ADMIN)
    store.set_attribute(laptop.id, "custom:tier", 3, actor=ADMIN)
    store.set_attribute(other.id, "custom:tier", 1, actor=ADMIN)
    generation = store.device_generation()

    out = ok(run("devices", "remove", "laptop"))
    assert f"removed device laptop.example.com ({laptop.id})" in out
    assert "custom:prodAccess, custom:tier" in out

    assert [d.id for d in store.list_devices()] == [other.id]
    assert store.device_generation() > generation
    assert store.get_attributes(other.id).attributes == {"custom:tier": 1}  # others keep theirs
    with db.session() as session:
        removed = audit.query(session, action="Remove device")
        attribute_events = [
            e
            for e in audit.query(session, action="Update node attribute")
            if e.details.get("device_id") == laptop.id and e.details.get("change") == "delete"
        ]
    assert [(e.actor, e.target, e.old_value["name"]) for e in removed] == [
        ("cli:tester", f"device/{laptop.id}", "laptop.example.com")
    ]
    assert sorted((e.details["key"], e.old_value) for e in attribute_events) == [
        ("custom:prodAccess", True),
        ("custom:tier", 3),
    ]
    # the key used only by the removed device left the registry: its type may be chosen anew
    store.set_attribute(other.id, "custom:prodAccess", "yes", actor=ADMIN)


def test_remove_by_node_id_and_unknown_device(run: Run, db: Database) -> None:
    device = BuiltinTailnet(db).add_device(name="box", user="a@example.com", actor=ADMIN)
    failed(run("devices", "remove", "nope"), "no device", "'nope'")
    ok(run("devices", "remove", device.node_id))
    assert BuiltinTailnet(db).list_devices() == []
    failed(run("devices", "remove", device.node_id), "no device")


def test_devices_help_lists_remove(run: Run) -> None:
    assert "add, import, list, remove" in ok(run("--help"))


def test_duplicates_stored_before_names_were_unique_do_not_block_other_imports(
    run: Run, tmp_path: Path, db: Database, clock: FrozenClock
) -> None:
    store = BuiltinTailnet(db)
    first = store.add_device(name="twin", user="a@example.com", actor=ADMIN)
    with db.session() as session:  # as an older release could store them
        add_row(session, replace(first, id="99", node_id="nTWIN2CNTRL"), clock())
    ok(run("devices", "import", import_file(tmp_path, [base()])))
    failed(run("devices", "remove", "twin"), "matches 2 devices", "use an id")
    ok(run("devices", "remove", "99"))
    ok(run("devices", "remove", "twin"))
    assert [d.name for d in store.list_devices()] == ["one.ts.net"]
