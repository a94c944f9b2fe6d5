"""The posture sync end to end: loopback vendor fakes → SyncRunner → the built-in tailnet (or a Tailscale one)."""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.core.gc_pause import PAUSED_THRESHOLD
from app.db import Database, audit
from app.db.tables.vendors import SyncStateRow
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import huntress, sentinelone
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendors import (
    HUNTRESS_KEY,
    HUNTRESS_SECRET,
    SENTINELONE_TOKEN,
    FakeHuntress,
    FakeSentinelOne,
    huntress_agent,
    sentinelone_agent,
)

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


@pytest.fixture
def fast_vendors() -> VendorRegistry:
    """The real vendor specs, with clients that do not sleep between retries."""

    def build_huntress(values: Any) -> huntress.HuntressClient:
        return huntress.HuntressClient(
            values["api_key"],
            values["api_secret"],
            base_url=values["base_url"],
            organization_id=values.get("organization_id"),
            sleep=_noop,
            page_size=2,
        )

    def build_s1(values: Any) -> sentinelone.SentinelOneClient:
        return sentinelone.SentinelOneClient(values["url"], values["api_token"], sleep=_noop, page_size=2)

    return VendorRegistry(
        (
            dataclasses.replace(huntress.SPEC, build=build_huntress),
            dataclasses.replace(sentinelone.SPEC, build=build_s1),
        )
    )


@pytest.fixture
def fake_huntress() -> Iterator[FakeHuntress]:
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        yield fake


@pytest.fixture
def fake_s1() -> Iterator[FakeSentinelOne]:
    with FakeSentinelOne() as fake:
        yield fake


@pytest.fixture
def integrations(db: Database, clock: FrozenClock, fast_vendors: VendorRegistry) -> Integrations:
    return Integrations(db, Cipher.from_secret("a test passphrase of some length"), clock=clock, vendors=fast_vendors)


@pytest.fixture
def runner(db: Database, builtin: BuiltinTailnet, integrations: Integrations, clock: FrozenClock) -> SyncRunner:
    return SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)


@pytest.fixture
def devices(builtin: BuiltinTailnet) -> list[Device]:
    setup = Actor("cli:setup")
    return [
        builtin.add_device(name=f"host{i}", user=f"u{i}@example.com", serial_numbers=serials, actor=setup)
        for i, serials in enumerate([["SER-0"], ["baseboard-x", " ser-1 "], ["SER-2"], [], ["To Be Filled By O.E.M."]])
    ]


def connect_huntress(integrations: Integrations, fake: FakeHuntress) -> None:
    integrations.add(
        "huntress", {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake.url}, actor=ADMIN
    )


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def test_sync_writes_vendor_attributes_verbatim_and_second_run_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    builtin: BuiltinTailnet,
    devices: list[Device],
    db: Database,
    clock: FrozenClock,
) -> None:
    fake_huntress.set_agents(
        [
            huntress_agent(0, "SER-0", defender_policy_status="Non Compliant"),
            huntress_agent(1, "SER-1", firewall_status="Pending Isolation"),
            huntress_agent(2, None),
            huntress_agent(3, "SER-9"),
            huntress_agent(4, "ser-1", last_callback_at="2020-01-01T00:00:00Z", firewall_status="Disabled"),
        ]
    )
    connect_huntress(integrations, fake_huntress)
    report = runner.run("huntress")
    assert report.result == "ok", report.error
    assert report.summary == "2 matches between 3 Tailscale devices with identifiers and 5 Huntress agents"
    assert (report.agents_without_serial, report.devices_without_identity, report.duplicate_serials_resolved) == (
        1,
        2,
        1,
    )
    assert attrs(builtin, devices[0]) == {
        "huntress:defenderPolicyStatus": "Non Compliant",
        "huntress:defenderStatus": "Protected",
        "huntress:firewallStatus": "Enabled",
    }
    assert attrs(builtin, devices[1])["huntress:firewallStatus"] == "Pending Isolation"  # the newer duplicate won
    assert attrs(builtin, devices[2]) == {} and attrs(builtin, devices[3]) == {}
    with db.session() as s:
        actors = {e.actor for e in audit.query(s, action="Update node attribute")}
    assert actors == {"system:sync:huntress"}

    requests_before = fake_huntress.requests
    again = runner.run("huntress")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert fake_huntress.requests > requests_before  # it did fetch, and found nothing to change

    status = status_of(integrations.get("huntress"), clock())
    assert status["headline"].startswith("Last sync just now, 2 matches between 3 Tailscale devices")
    assert (status["devices_synced"], status["agents_without_serial"]) == (2, 1)


def test_changes_and_unmatched_devices(
    runner: SyncRunner,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    fake_huntress.set_agents([huntress_agent(0, "SER-0"), huntress_agent(1, "SER-1")])
    connect_huntress(integrations, fake_huntress)
    runner.run("huntress")
    builtin.set_attribute(devices[1].id, "custom:keep", True, actor=Actor("cli:x"))
    fake_huntress.set_agents([huntress_agent(0, "SER-0", firewall_status="Isolated")])
    report = runner.run("huntress")
    assert (report.sets, report.deletes) == (1, 3)
    assert attrs(builtin, devices[0])["huntress:firewallStatus"] == "Isolated"
    assert attrs(builtin, devices[1]) == {"custom:keep": True}  # only the vendor's own attributes go


def test_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    fake_huntress.set_agents([huntress_agent(i, f"SER-{i}") for i in range(3)])
    connect_huntress(integrations, fake_huntress)
    assert runner.run("huntress").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake_huntress.set_agents([huntress_agent(i, f"SER-{i}", firewall_status="Disabled") for i in range(7)])
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:  # page 1 arrived: every later request fails
            failing = True
            fake_huntress.fail_next(503, times=10)

    report = runner.run("huntress", progress=fail_after_first_page)
    assert report.result == "error" and "503" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("huntress")
    assert integration.paused_until is None and integration.last_result == "error"
    assert integration.last_report["matches"] == 3  # the last successful counts stay visible


def test_authentication_failure_pauses_until_credentials_change(
    runner: SyncRunner, integrations: Integrations, fake_huntress: FakeHuntress, clock: FrozenClock
) -> None:
    integrations.add("huntress", {"api_key": "wrong", "api_secret": "nope", "base_url": fake_huntress.url}, actor=ADMIN)
    assert runner.due() == ["huntress"]
    report = runner.run("huntress")
    assert report.result == "error" and "refused the credentials" in (report.error or "")
    assert "nope" not in (report.error or "")
    integration = integrations.get("huntress")
    assert integration.paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    clock.advance(hours=1)
    assert runner.due() == []
    integrations.update("huntress", {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET}, actor=ADMIN)
    assert runner.due() == ["huntress"]
    assert runner.run("huntress").result == "ok"
    clock.advance(minutes=10)
    assert runner.due() == []
    clock.advance(minutes=6)
    assert runner.due() == ["huntress"]


def test_sentinelone_types_and_null_serial(
    runner: SyncRunner,
    integrations: Integrations,
    fake_s1: FakeSentinelOne,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    fake_s1.set_agents(
        [
            sentinelone_agent(0, "SER-0", activeThreats=2, infected=True, operationalState="partially_disabled"),
            sentinelone_agent(1, None),
            sentinelone_agent(2, "SER-2", isDecommissioned=True),
        ]
    )
    integrations.add("sentinelone", {"url": fake_s1.url, "api_token": SENTINELONE_TOKEN}, actor=ADMIN)
    report = runner.run("sentinelone")
    assert report.result == "ok", report.error
    assert report.summary == "1 match between 3 Tailscale devices with identifiers and 2 SentinelOne agents"
    assert attrs(builtin, devices[0]) == {
        "sentinelOne:activeThreats": 2,
        "sentinelOne:agentVersion": "23.4.2.14",
        "sentinelOne:encryptedApplications": True,
        "sentinelOne:firewallEnabled": True,
        "sentinelOne:infected": True,
        "sentinelOne:operationalState": "partially_disabled",
    }


def test_one_sync_per_integration_at_a_time(
    runner: SyncRunner, integrations: Integrations, fake_huntress: FakeHuntress, devices: list[Device]
) -> None:
    fake_huntress.set_agents([huntress_agent(0, "SER-0")])
    connect_huntress(integrations, fake_huntress)
    fake_huntress.stall_next(1.0)
    results: list[str] = []

    def go() -> None:
        results.append(runner.run("huntress").result)

    first = threading.Thread(target=go)
    first.start()
    import time

    time.sleep(0.3)
    results.append(runner.run("huntress").result)
    first.join()
    assert sorted(results) == ["ok", "skipped"]


def test_clear_removes_only_the_vendors_attributes(
    runner: SyncRunner,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    fake_huntress.set_agents([huntress_agent(0, "SER-0")])
    connect_huntress(integrations, fake_huntress)
    runner.run("huntress")
    builtin.set_attribute(devices[0].id, "custom:keep", 1, actor=Actor("cli:x"))
    assert runner.clear("huntress") == 3
    assert attrs(builtin, devices[0]) == {"custom:keep": 1}


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    """With a real tailnet (here: the Tailscale adapter against the built-in API) values go to custom: keys."""
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
        fake_huntress.set_agents(
            [huntress_agent(0, "SER-0", defender_policy_status="Gpo Conflict"), huntress_agent(2, "SER-2")]
        )
        connect_huntress(integrations, fake_huntress)
        report = runner.run("huntress")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {
            "custom:huntress_defenderPolicyStatus": "Gpo_Conflict",
            "custom:huntress_defenderStatus": "Protected",
            "custom:huntress_firewallStatus": "Enabled",
        }
        assert runner.run("huntress").write_calls == 0  # diffed against what it wrote (sync state)
        fake_huntress.set_agents([huntress_agent(0, "SER-0", defender_policy_status="Gpo Conflict")])
        third = runner.run("huntress")
        assert (third.sets, third.deletes) == (0, 3)
        assert attrs(builtin, devices[2]) == {}
        with db.session() as s:
            assert {r.device_id for r in s.scalars(select(SyncStateRow))} == {devices[0].id}
    finally:
        remote.close()
        server.shutdown()
        server.server_close()


def test_the_sync_holds_off_full_collections_while_it_runs(
    runner: SyncRunner,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    devices: list[Device],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fetching and planning run with full collections paused (app/core/gc_pause.py); the threshold comes back
    after a sync that succeeded and after one that failed."""
    before = gc.get_threshold()
    during: list[int] = []
    fetch = huntress.HuntressClient.fetch_agents

    def watched(self: huntress.HuntressClient, progress: Any = None) -> Any:
        during.append(gc.get_threshold()[2])
        return fetch(self, progress)

    monkeypatch.setattr(huntress.HuntressClient, "fetch_agents", watched)
    fake_huntress.set_agents([huntress_agent(0, "SER-0")])
    connect_huntress(integrations, fake_huntress)
    assert runner.run("huntress").result == "ok"
    assert gc.get_threshold() == before
    fake_huntress.fail_next(401)
    assert runner.run("huntress").result == "error"
    assert gc.get_threshold() == before
    assert during == [PAUSED_THRESHOLD, PAUSED_THRESHOLD]
