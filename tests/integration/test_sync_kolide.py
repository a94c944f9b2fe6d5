"""The sync contract for Kolide: the loopback fake → SyncRunner → the built-in tailnet (or a Tailscale one)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database, audit
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import kolide
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_kolide import KOLIDE_KEY, FakeKolide, kolide_device

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


@pytest.fixture
def vendors() -> VendorRegistry:
    """Kolide's real spec with a client that pages by 2 and does not sleep between retries."""

    def build(values: Any) -> kolide.KolideClient:
        return kolide.KolideClient(values["api_key"], base_url=values["base_url"], sleep=_noop, page_size=2)

    return VendorRegistry((dataclasses.replace(kolide.SPEC, build=build),))


@pytest.fixture
def fake() -> Iterator[FakeKolide]:
    with FakeKolide() as server:
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
        for i, serials in enumerate([["C02ZK1ABMD6T"], ["pf3abc12"], ["SER-2"], [], ["Default string"]])
    ]


def connect(integrations: Integrations, fake: FakeKolide, key: str = KOLIDE_KEY) -> None:
    integrations.add("kolide", {"api_key": key, "base_url": fake.url}, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def reference_devices() -> list[dict[str, Any]]:
    return [
        kolide_device(0, "C02ZK1ABMD6T", name="ana-mbp"),
        kolide_device(1, "PF3ABC12", name="bo-thinkpad", auth_state="Will Block", will_block_at="2026-12-02T16:00:00Z"),
        kolide_device(2, None, auth_state="Blocked"),  # no serial: counted, never matched
        kolide_device(3, "SER-2", auth_state=None),  # matched, state not collected: nothing written
        kolide_device(4, "SER-404", auth_state="Notified"),  # no such device
    ]


def test_verbatim_values_summary_and_a_second_sync_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeKolide,
    builtin: BuiltinTailnet,
    devices: list[Device],
    db: Database,
    clock: FrozenClock,
) -> None:
    fake.set_agents(reference_devices())
    connect(integrations, fake)
    report = runner.run("kolide")
    assert report.result == "ok", report.error
    assert report.summary == "3 matches between 3 Tailscale devices with identifiers and 5 Kolide agents"
    assert (report.agents_without_serial, report.devices_without_identity) == (1, 2)
    assert attrs(builtin, devices[0]) == {"kolide:authState": "Good"}
    assert attrs(builtin, devices[1]) == {"kolide:authState": "Will Block"}  # verbatim, space kept
    assert attrs(builtin, devices[2]) == {}  # auth_state null → unset, never a guessed value
    assert attrs(builtin, devices[3]) == {} and attrs(builtin, devices[4]) == {}
    cursors = [c.params.get("cursor") for c in fake.calls]
    assert cursors[0] is None and all(cursors[1:]) and len(set(cursors)) == 3  # followed next_cursor
    assert len(fake.calls) == 3 and set(fake.versions_seen) == {"2023-05-26"}
    with db.session() as s:
        actors = {e.actor for e in audit.query(s, action="Update node attribute")}
    assert actors == {"system:sync:kolide"}

    again = runner.run("kolide")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    status = status_of(integrations.get("kolide"), clock())
    assert status["headline"].startswith("Last sync just now, 3 matches between 3 Tailscale devices")


def test_a_changed_state_is_rewritten_and_a_vanished_device_loses_its_attribute(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(reference_devices())
    connect(integrations, fake)
    runner.run("kolide")
    builtin.set_attribute(devices[1].id, "custom:keep", True, actor=Actor("cli:x"))
    fake.set_agents([kolide_device(0, "C02ZK1ABMD6T", auth_state="Blocked")])
    report = runner.run("kolide")
    assert (report.sets, report.deletes) == (1, 1)
    assert attrs(builtin, devices[0]) == {"kolide:authState": "Blocked"}
    assert attrs(builtin, devices[1]) == {"custom:keep": True}


def test_a_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(reference_devices())
    connect(integrations, fake)
    assert runner.run("kolide").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_agents([kolide_device(i, "C02ZK1ABMD6T" if i == 0 else None, auth_state="Blocked") for i in range(7)])
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(503, times=10)

    report = runner.run("kolide", progress=fail_after_first_page)
    assert report.result == "error" and "503" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("kolide")
    assert integration.paused_until is None and integration.last_report["matches"] == 3


def test_a_refused_key_pauses_the_integration_for_24_hours(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, clock: FrozenClock, devices: list[Device]
) -> None:
    fake.set_agents(reference_devices())
    connect(integrations, fake, key="k2sk_v1_wrong_key")
    report = runner.run("kolide")
    assert report.result == "error" and "refused the credentials" in (report.error or "")
    assert "k2sk_v1_wrong_key" not in (report.error or "")
    assert integrations.get("kolide").paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    integrations.update("kolide", {"api_key": KOLIDE_KEY}, actor=ADMIN)
    assert runner.due() == ["kolide"] and runner.run("kolide").result == "ok"


def test_a_key_without_device_rights_pauses_too(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, clock: FrozenClock
) -> None:
    fake.forbidden = True
    connect(integrations, fake)
    report = runner.run("kolide")
    assert report.result == "error" and "403" in (report.error or "")
    assert integrations.get("kolide").paused_until == clock() + timedelta(hours=24)


def test_rate_limited_pages_are_waited_out(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(reference_devices())
    fake.fail_next(429, times=2, retry_after=1)
    connect(integrations, fake)
    report = runner.run("kolide")
    assert report.result == "ok", report.error
    assert [c.status for c in fake.calls][:3] == [429, 429, 200]
    assert attrs(builtin, devices[1]) == {"kolide:authState": "Will Block"}


def test_custom_mode_on_the_builtin_store(
    db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: FakeKolide, devices: list[Device],
    clock: FrozenClock,
) -> None:  # fmt: skip
    runner = SyncRunner(db, builtin, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
    fake.set_agents(reference_devices())
    connect(integrations, fake)
    assert runner.run("kolide").result == "ok"
    assert attrs(builtin, devices[0]) == {"custom:kolide_authState": "Good"}
    assert attrs(builtin, devices[1]) == {"custom:kolide_authState": "Will_Block"}
    assert runner.run("kolide").write_calls == 0


def test_custom_mode_against_a_tailscale_api(
    db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: FakeKolide, devices: list[Device],
    clock: FrozenClock,
) -> None:  # fmt: skip
    """Through the Tailscale adapter (against the built-in API) values go to custom: keys, diffed by sync state."""
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
        fake.set_agents(reference_devices())
        connect(integrations, fake)
        report = runner.run("kolide")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[1]) == {"custom:kolide_authState": "Will_Block"}
        assert runner.run("kolide").write_calls == 0
        fake.set_agents([kolide_device(1, "PF3ABC12", auth_state="Good")])
        third = runner.run("kolide")
        assert (third.sets, third.deletes) == (1, 1)
        assert attrs(builtin, devices[0]) == {} and attrs(builtin, devices[1]) == {"custom:kolide_authState": "Good"}
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
