"""Fleet's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): policy keys that
go when a policy is removed or untagged, read by prefix in custom mode and in the sync state, rate limits and a
team filter, and lint knowing any fleetPolicy: key."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.vendors import SyncStateRow
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import fleet
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_fleet import DISK_POLICY, FLEET_TOKEN, FakeFleet, fleet_host, fleet_policy
from tests.integration.vendor_contract import (
    ADMIN,
    FIREWALL_POLICY,
    FLEET,
    attrs,
    fleet_reference,
    sync_fixtures,
    tailscale_remote,
)

mono, vendors, fake, integrations, runner, devices = sync_fixtures(FLEET)


def test_a_removed_or_untagged_policy_loses_its_key_on_the_next_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeFleet, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(fleet_reference())
    FLEET.connect(integrations, fake)
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
    fake.set_agents(fleet_reference())
    FLEET.connect(integrations, fake)
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


def test_custom_mode_sync_state_keeps_only_the_policy_keys_still_written(
    db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: FakeFleet, devices: list[Device],
    clock: FrozenClock,
) -> None:  # fmt: skip
    """Through the Tailscale adapter the sync diffs against its own sync state, prefix keys included."""
    with tailscale_remote(db, builtin, clock) as remote:
        runner = SyncRunner(db, remote, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
        fake.set_agents(fleet_reference())
        FLEET.connect(integrations, fake)
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
