"""The sync contract for SimpleMDM: loopback fake → SyncRunner → the built-in tailnet (or a Tailscale one)."""

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
from app.vendors import simplemdm
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_simplemdm import SIMPLEMDM_KEY, FakeSimpleMDM, simplemdm_device

ADMIN = "cli:admin"
IPHONE = {
    "wifi_mac": "f0:db:e2:df:e9:2f",
    "is_supervised": False,
    "is_dep_enrollment": False,
    "filevault_enabled": False,
    "firewall": {"enabled": None, "block_all_incoming": None, "stealth_mode": None},
    "system_integrity_protection_enabled": None,
    "passcode_compliant": True,
}


def _noop(_seconds: float) -> None:
    return None


@pytest.fixture
def vendors() -> VendorRegistry:
    """The real SimpleMDM spec, with a client that pages by 2 and does not sleep between retries."""

    def build(values: Any) -> simplemdm.SimpleMDMClient:
        return simplemdm.SimpleMDMClient(values["api_key"], base_url=values["base_url"], sleep=_noop, page_size=2)

    return VendorRegistry((dataclasses.replace(simplemdm.SPEC, build=build),))


@pytest.fixture
def fake() -> Iterator[FakeSimpleMDM]:
    with FakeSimpleMDM() as server:
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
        for i, serials in enumerate([["SER-0"], ["baseboard-x", " ser-1 "], ["SER-2"], [], ["To Be Filled By O.E.M."]])
    ]


def connect(integrations: Integrations, fake: FakeSimpleMDM) -> None:
    integrations.add("simplemdm", {"api_key": SIMPLEMDM_KEY, "base_url": fake.url}, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return {k: v for k, v in builtin.get_attributes(device.id).attributes.items() if not k.startswith("node:")}


def test_sync_writes_values_verbatim_skips_nulls_and_a_second_run_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeSimpleMDM,
    builtin: BuiltinTailnet,
    devices: list[Device],
    db: Database,
    clock: FrozenClock,
) -> None:
    fake.set_agents(
        [
            simplemdm_device(
                0, "SER-0", firewall={"enabled": False, "block_all_incoming": False, "stealth_mode": None}
            ),
            simplemdm_device(1, "ser-1", **IPHONE),
            simplemdm_device(2, None),
            simplemdm_device(3, "SER-9"),
            simplemdm_device(4, None, status="awaiting enrollment"),  # not listed: not asked for
        ]
    )
    connect(integrations, fake)
    report = runner.run("simplemdm")
    assert report.result == "ok", report.error
    assert report.summary == "2 matches between 3 Tailscale devices with identifiers and 4 SimpleMDM agents"
    assert report.agents_without_serial == 1
    assert attrs(builtin, devices[0]) == {
        "simplemdm:present": True,
        "simplemdm:status": "enrolled",
        "simplemdm:supervised": True,
        "simplemdm:fileVaultEnabled": True,
        "simplemdm:firewallEnabled": False,
        "simplemdm:SIPEnabled": True,
        "simplemdm:passcodeCompliant": True,
        "simplemdm:depEnrolled": True,
    }
    assert attrs(builtin, devices[1]) == {  # an iPhone: no firewall, no SIP (null → unset, not false)
        "simplemdm:present": True,
        "simplemdm:status": "enrolled",
        "simplemdm:supervised": False,
        "simplemdm:fileVaultEnabled": False,
        "simplemdm:passcodeCompliant": True,
        "simplemdm:depEnrolled": False,
    }
    assert attrs(builtin, devices[2]) == {} and attrs(builtin, devices[3]) == {}
    with db.session() as s:
        assert {e.actor for e in audit.query(s, action="Update node attribute")} == {"system:sync:simplemdm"}
    assert [c.params.get("starting_after") for c in fake.calls] == [None, "101"]

    before = fake.requests
    again = runner.run("simplemdm")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert fake.requests > before
    status = status_of(integrations.get("simplemdm"), clock())
    assert status["headline"].startswith("Last sync just now, 2 matches between 3 Tailscale devices")


def test_a_value_becoming_null_removes_its_attribute(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeSimpleMDM,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    fake.set_agents([simplemdm_device(0, "SER-0"), simplemdm_device(1, "SER-1")])
    connect(integrations, fake)
    assert runner.run("simplemdm").result == "ok"
    builtin.set_attribute(devices[1].id, "custom:keep", True, actor=Actor("cli:x"))
    fake.set_agents([simplemdm_device(0, "SER-0", filevault_enabled=None, is_supervised=False)])
    report = runner.run("simplemdm")
    assert (report.sets, report.deletes) == (1, 9)  # SER-0: supervised changes, FileVault goes; SER-1: all 8
    assert attrs(builtin, devices[0])["simplemdm:supervised"] is False
    assert "simplemdm:fileVaultEnabled" not in attrs(builtin, devices[0])
    assert attrs(builtin, devices[1]) == {"custom:keep": True}


def test_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeSimpleMDM,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    fake.set_agents([simplemdm_device(i, f"SER-{i}") for i in range(3)])
    connect(integrations, fake)
    assert runner.run("simplemdm").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_agents([simplemdm_device(i, f"SER-{i}", filevault_enabled=False) for i in range(7)])
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(502, times=10)

    report = runner.run("simplemdm", progress=fail_after_first_page)
    assert report.result == "error" and "502" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("simplemdm")
    assert integration.paused_until is None and integration.last_report["matches"] == 3


def test_a_refused_key_pauses_for_24_hours_until_the_key_changes(
    runner: SyncRunner, integrations: Integrations, fake: FakeSimpleMDM, clock: FrozenClock
) -> None:
    integrations.add("simplemdm", {"api_key": "smdm-revoked-key", "base_url": fake.url}, actor=ADMIN)
    report = runner.run("simplemdm")
    assert report.result == "error" and "refused the credentials" in (report.error or "")
    assert "smdm-revoked-key" not in (report.error or "")
    assert integrations.get("simplemdm").paused_until == clock() + timedelta(hours=24)
    assert fake.calls[-1].status == 401
    clock.advance(hours=12)
    assert runner.due() == []
    integrations.update("simplemdm", {"api_key": SIMPLEMDM_KEY}, actor=ADMIN)
    assert runner.due() == ["simplemdm"]
    assert runner.run("simplemdm").result == "ok"


def test_the_fakes_rate_limit_is_waited_out(
    db: Database, builtin: BuiltinTailnet, clock: FrozenClock, devices: list[Device]
) -> None:
    """Three requests a minute: the fourth page is refused with 429 + Retry-After, waited out, asked again."""
    now = [0.0]

    def sleep(seconds: float) -> None:  # simulated time: the client's waits move the fake's clock
        now[0] += seconds

    def build(values: Any) -> simplemdm.SimpleMDMClient:
        return simplemdm.SimpleMDMClient(values["api_key"], base_url=values["base_url"], sleep=sleep, page_size=2)

    registry = VendorRegistry((dataclasses.replace(simplemdm.SPEC, build=build),))
    integrations = Integrations(db, Cipher.from_secret("another test passphrase"), clock=clock, vendors=registry)
    runner = SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)
    with FakeSimpleMDM(
        [simplemdm_device(i, f"SER-{i}") for i in range(7)], rate_limit_per_minute=3, clock=lambda: now[0]
    ) as limited:
        connect(integrations, limited)
        report = runner.run("simplemdm")
        assert report.result == "ok", report.error
        assert [(c.params.get("starting_after"), c.status) for c in limited.calls] == [
            (None, 200),
            ("101", 200),
            ("103", 200),
            ("105", 429),
            ("105", 200),
        ]
        assert now[0] == 60.0  # exactly the Retry-After the fake sent
        assert report.matches == 3


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake: FakeSimpleMDM,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    """On a real tailnet (the Tailscale adapter against the built-in API) the values go to custom: keys."""
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
        fake.set_agents([simplemdm_device(0, "SER-0", **IPHONE), simplemdm_device(2, "SER-2")])
        connect(integrations, fake)
        report = runner.run("simplemdm")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {
            "custom:simplemdm_present": True,
            "custom:simplemdm_status": "enrolled",
            "custom:simplemdm_supervised": False,
            "custom:simplemdm_fileVaultEnabled": False,
            "custom:simplemdm_passcodeCompliant": True,
            "custom:simplemdm_depEnrolled": False,
        }
        assert attrs(builtin, devices[2])["custom:simplemdm_SIPEnabled"] is True
        assert runner.run("simplemdm").write_calls == 0
        fake.set_agents([simplemdm_device(0, "SER-0", **IPHONE)])
        third = runner.run("simplemdm")
        assert (third.sets, third.deletes) == (0, 8)
        assert attrs(builtin, devices[2]) == {}
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
