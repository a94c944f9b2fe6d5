"""The sync contract for Fleet: the loopback fake → SyncRunner → the built-in tailnet (or a Tailscale one),
including the customer-named ``fleetPolicy:<name>`` keys (an attribute family the sync owns by prefix)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database, audit
from app.db.tables.vendors import SyncStateRow
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import fleet
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_fleet import DISK_POLICY, FLEET_TOKEN, SCREEN_LOCK_POLICY, FakeFleet, fleet_host, fleet_policy

ADMIN = "cli:admin"
FIREWALL_POLICY = {
    **SCREEN_LOCK_POLICY,
    "id": 11,
    "name": "Firewall",
    "description": "Tailscale: fleetPolicy:firewallOn",
}
LUKS_POLICY = {**DISK_POLICY, "id": 8, "name": "LUKS on", "platform": "linux"}


def _noop(_seconds: float) -> None:
    return None


@pytest.fixture
def vendors() -> VendorRegistry:
    """Fleet's real spec with a client that pages by 2 and does not sleep between retries."""

    def build(values: Any) -> fleet.FleetClient:
        return fleet.FleetClient(
            values["url"], values["api_token"], team_id=values.get("team_id"), sleep=_noop, page_size=2
        )

    return VendorRegistry((dataclasses.replace(fleet.SPEC, build=build),))


@pytest.fixture
def fake() -> Iterator[FakeFleet]:
    with FakeFleet() as server:
        yield server


@pytest.fixture
def integrations(db: Database, clock: FrozenClock, vendors: VendorRegistry) -> Integrations:
    return Integrations(db, Cipher.from_secret("a test passphrase of some length"), clock=clock, vendors=vendors)


@pytest.fixture
def runner(db: Database, builtin: BuiltinTailnet, integrations: Integrations, clock: FrozenClock) -> SyncRunner:
    return SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)


@pytest.fixture
def devices(builtin: BuiltinTailnet) -> list[Device]:
    setup = Actor("cli:setup")
    return [
        builtin.add_device(name=f"host{i}", user=f"u{i}@example.com", serial_numbers=serials, actor=setup)
        for i, serials in enumerate([["C02ZK1ABMD6T"], ["SER-1"], ["SER-2"], [], ["0"]])
    ]


def connect(integrations: Integrations, fake: FakeFleet, token: str = FLEET_TOKEN) -> None:
    integrations.add("fleet", {"url": fake.url, "api_token": token}, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def reference_hosts() -> list[dict[str, Any]]:
    return [
        fleet_host(1, "C02ZK1ABMD6T", display_name="ana-mbp"),  # passes the disk policy
        fleet_host(
            2,
            "SER-1",
            policies=[fleet_policy(DISK_POLICY, "fail"), fleet_policy(FIREWALL_POLICY, "pass")],
        ),
        fleet_host(3, "SER-2", policies=[fleet_policy(DISK_POLICY, "")]),  # not run yet: fleet:present only
        fleet_host(17, "", platform="ubuntu", policies=[fleet_policy(LUKS_POLICY, "fail")]),  # no serial
        fleet_host(5, "SER-404"),
    ]


def test_present_and_policy_keys_summary_and_a_second_sync_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeFleet,
    builtin: BuiltinTailnet,
    devices: list[Device],
    db: Database,
    clock: FrozenClock,
) -> None:
    fake.set_agents(reference_hosts())
    connect(integrations, fake)
    report = runner.run("fleet")
    assert report.result == "ok", report.error
    assert report.summary == "3 matches between 3 Tailscale devices with identifiers and 5 Fleet agents"
    assert (report.agents_without_serial, report.devices_without_identity) == (1, 2)
    assert attrs(builtin, devices[0]) == {"fleet:present": True, "fleetPolicy:diskEncrypted": True}
    assert attrs(builtin, devices[1]) == {
        "fleet:present": True,
        "fleetPolicy:diskEncrypted": False,
        "fleetPolicy:firewallOn": True,
    }
    assert attrs(builtin, devices[2]) == {"fleet:present": True}
    assert attrs(builtin, devices[3]) == {} and attrs(builtin, devices[4]) == {}
    assert [c.params["page"] for c in fake.calls] == ["0", "1", "2"]
    assert all(c.params["populate_policies"] == "true" for c in fake.calls)
    with db.session() as s:
        actors = {e.actor for e in audit.query(s, action="Update node attribute")}
    assert actors == {"system:sync:fleet"}

    again = runner.run("fleet")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    status = status_of(integrations.get("fleet"), clock())
    assert status["headline"].startswith("Last sync just now, 3 matches between 3 Tailscale devices")


def test_a_removed_or_untagged_policy_loses_its_key_on_the_next_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeFleet, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(reference_hosts())
    connect(integrations, fake)
    runner.run("fleet")
    builtin.set_attribute(devices[1].id, "custom:keep", 1, actor=Actor("cli:x"))
    untagged = {**FIREWALL_POLICY, "description": "no longer used for access"}
    fake.set_agents(
        [
            fleet_host(1, "C02ZK1ABMD6T", policies=[]),  # the disk policy was deleted
            fleet_host(2, "SER-1", policies=[fleet_policy(DISK_POLICY, "pass"), fleet_policy(untagged, "pass")]),
        ]
    )
    report = runner.run("fleet")
    assert report.result == "ok", report.error
    assert attrs(builtin, devices[0]) == {"fleet:present": True}
    assert attrs(builtin, devices[1]) == {"fleet:present": True, "fleetPolicy:diskEncrypted": True, "custom:keep": 1}
    assert attrs(builtin, devices[2]) == {}  # its host is gone
    assert (report.sets, report.deletes) == (1, 3)
    assert runner.clear("fleet") == 3
    assert attrs(builtin, devices[1]) == {"custom:keep": 1}


def test_a_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner, integrations: Integrations, fake: FakeFleet, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(reference_hosts())
    connect(integrations, fake)
    assert runner.run("fleet").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_agents([fleet_host(i, "C02ZK1ABMD6T" if i == 0 else None, policies=[]) for i in range(7)])
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(502, times=10)

    report = runner.run("fleet", progress=fail_after_first_page)
    assert report.result == "error" and "502" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("fleet")
    assert integration.paused_until is None and integration.last_report["matches"] == 3


def test_a_refused_token_pauses_the_integration_for_24_hours(
    runner: SyncRunner, integrations: Integrations, fake: FakeFleet, clock: FrozenClock, devices: list[Device]
) -> None:
    fake.set_agents(reference_hosts())
    connect(integrations, fake, token="wrong-fleet-token")
    report = runner.run("fleet")
    assert report.result == "error" and "refused the credentials" in (report.error or "")
    assert "Authentication required" in (report.error or "") and "wrong-fleet-token" not in (report.error or "")
    assert integrations.get("fleet").paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    integrations.update("fleet", {"api_token": FLEET_TOKEN}, actor=ADMIN)
    assert runner.due() == ["fleet"] and runner.run("fleet").result == "ok"


def test_rate_limited_pages_are_waited_out_and_a_team_is_filtered(
    runner: SyncRunner, integrations: Integrations, fake: FakeFleet, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents([fleet_host(1, "C02ZK1ABMD6T", team_id=4), fleet_host(2, "SER-1", team_id=5)])
    fake.fail_next(429, times=1, retry_after=2)
    integrations.add("fleet", {"url": fake.url, "api_token": FLEET_TOKEN, "team_id": "4"}, actor=ADMIN)
    report = runner.run("fleet")
    assert report.result == "ok", report.error
    assert [c.status for c in fake.calls][:2] == [429, 200]
    assert all(c.params["team_id"] == "4" for c in fake.calls)
    assert attrs(builtin, devices[0])["fleet:present"] is True and attrs(builtin, devices[1]) == {}


def test_custom_mode_on_the_builtin_store_reads_policy_keys_by_prefix(
    db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: FakeFleet, devices: list[Device],
    clock: FrozenClock,
) -> None:  # fmt: skip
    runner = SyncRunner(db, builtin, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
    fake.set_agents(reference_hosts())
    connect(integrations, fake)
    assert runner.run("fleet").result == "ok"
    assert attrs(builtin, devices[1]) == {
        "custom:fleet_present": True,
        "custom:fleetPolicy_diskEncrypted": False,
        "custom:fleetPolicy_firewallOn": True,
    }
    assert runner.run("fleet").write_calls == 0
    fake.set_agents([fleet_host(2, "SER-1", policies=[fleet_policy(FIREWALL_POLICY, "pass")])])
    third = runner.run("fleet")
    assert attrs(builtin, devices[1]) == {"custom:fleet_present": True, "custom:fleetPolicy_firewallOn": True}
    assert attrs(builtin, devices[0]) == {}
    assert (third.sets, third.deletes) == (0, 4)


def test_custom_mode_against_a_tailscale_api(
    db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: FakeFleet, devices: list[Device],
    clock: FrozenClock,
) -> None:  # fmt: skip
    """Through the Tailscale adapter the sync diffs against its own sync state, prefix keys included."""
    from app.tailnet.api import make_api
    from app.tailnet.auth import AuthStore
    from app.tailnet.tailscale import TailscaleTailnet
    from app.web.server import make_server

    server = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, key = AuthStore(db, clock=clock).create_api_key(actor=Actor("cli:setup"))
    remote = TailscaleTailnet(
        db, api_url=f"http://127.0.0.1:{server.server_port}", api_key=key, clock=clock, sleep=_noop
    )
    try:
        runner = SyncRunner(db, remote, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
        fake.set_agents(reference_hosts())
        connect(integrations, fake)
        report = runner.run("fleet")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {"custom:fleet_present": True, "custom:fleetPolicy_diskEncrypted": True}
        assert runner.run("fleet").write_calls == 0
        fake.set_agents([fleet_host(1, "C02ZK1ABMD6T", policies=[])])
        third = runner.run("fleet")
        assert (third.sets, third.deletes) == (0, 5)
        assert attrs(builtin, devices[0]) == {"custom:fleet_present": True}
        with db.session() as s:
            keys = {(r.device_id, r.key) for r in s.scalars(select(SyncStateRow))}
        assert keys == {(devices[0].id, "custom:fleet_present")}
    finally:
        remote.close()
        server.shutdown()
        server.server_close()


def test_lint_knows_any_fleet_policy_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fleetPolicy:<any name>`` (and its custom: form) is a known boolean once Fleet is a registered vendor."""
    from app.posture import known
    from app.posture.lint import lint
    from app.posture.policy import parse_policy

    monkeypatch.setattr(known, "REGISTRY", VendorRegistry((fleet.SPEC,)))
    known._table.cache_clear()
    known._hints.cache_clear()
    try:
        for key in ("fleetPolicy:diskEncrypted", "fleetPolicy:anything_at_all", "custom:fleetPolicy_diskEncrypted"):
            attribute = known.known_attribute(key)
            assert attribute is not None and attribute.type == "boolean", key
        assert known.known_attribute("fleetPolicy:") is None
        assert "fleetPolicy" in known.known_namespaces()
        use = '"defaultSrcPosture": ["posture:fleet"]'
        ok = (
            '{"postures": {"posture:fleet": ["fleetPolicy:diskEncrypted == true", "fleet:present == true"]}, '
            + use
            + "}"
        )
        assert [f for f in lint(parse_policy(ok)) if f.level != "info"] == []
        wrong = '{"postures": {"posture:fleet": ["fleetPolicy:diskEncrypted == \'yes\'"]}, ' + use + "}"
        assert any("boolean" in f.message or "true" in f.message for f in lint(parse_policy(wrong)))
    finally:
        known._table.cache_clear()
        known._hints.cache_clear()
