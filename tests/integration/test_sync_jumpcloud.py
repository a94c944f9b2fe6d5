"""The sync contract for JumpCloud: loopback fake → SyncRunner → the built-in tailnet (or a Tailscale one)."""

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
from app.vendors import jumpcloud
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_jumpcloud import (
    INTERFACES_PATH,
    JUMPCLOUD_KEY,
    SYSTEMS_PATH,
    FakeJumpCloud,
    jumpcloud_interfaces,
    jumpcloud_system,
)

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


@pytest.fixture
def vendors() -> VendorRegistry:
    """The real JumpCloud spec, with a client that pages by 2 and does not sleep between retries."""

    def build(values: Any) -> jumpcloud.JumpCloudClient:
        return jumpcloud.JumpCloudClient(
            values["api_key"],
            org_id=values.get("org_id"),
            base_url=values["base_url"],
            mac_lookup=jumpcloud.parse_mac_lookup(values.get("mac_lookup")),
            sleep=_noop,
            page_size=2,
            interface_page_size=4,
        )

    return VendorRegistry((dataclasses.replace(jumpcloud.SPEC, build=build),))


@pytest.fixture
def fake() -> Iterator[FakeJumpCloud]:
    with FakeJumpCloud() as server:
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


def connect(integrations: Integrations, fake: FakeJumpCloud, **extra: str) -> None:
    integrations.add("jumpcloud", {"api_key": JUMPCLOUD_KEY, "base_url": fake.url, **extra}, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return {k: v for k, v in builtin.get_attributes(device.id).attributes.items() if not k.startswith("node:")}


def serve(fake: FakeJumpCloud, systems: list[dict[str, Any]]) -> None:
    fake.set_agents(systems)
    fake.set_interfaces([row for n in range(len(systems)) for row in jumpcloud_interfaces(n)])


def test_sync_writes_values_verbatim_and_a_second_run_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJumpCloud,
    builtin: BuiltinTailnet,
    devices: list[Device],
    db: Database,
    clock: FrozenClock,
) -> None:
    serve(
        fake,
        [
            jumpcloud_system(
                0,
                "SER-0",
                mdm={"vendor": "external"},
                policyStats={"total": 5, "success": 3, "failed": 2, "pending": 0},
                agentVersion="1.180.2",
            ),
            jumpcloud_system(1, "ser-1", active=False, fde={"active": False, "keyPresent": None}),
            jumpcloud_system(2, None),
            jumpcloud_system(3, "SER-9"),
        ],
    )
    connect(integrations, fake)
    report = runner.run("jumpcloud")
    assert report.result == "ok", report.error
    assert report.summary == "2 matches between 3 Tailscale devices with identifiers and 4 JumpCloud agents"
    assert report.agents_without_serial == 1
    assert attrs(builtin, devices[0]) == {
        "jumpcloud:present": True,
        "jumpcloud:active": True,
        "jumpcloud:fdeActive": True,
        "jumpcloud:fdeKeyPresent": True,
        "jumpcloud:mdmVendor": "external",
        "jumpcloud:policiesFailed": 2,
        "jumpcloud:agentVersion": "1.180.2",
    }
    assert attrs(builtin, devices[1]) == {  # keyPresent null: unset, not false
        "jumpcloud:present": True,
        "jumpcloud:active": False,
        "jumpcloud:fdeActive": False,
        "jumpcloud:mdmVendor": "internal",
        "jumpcloud:policiesFailed": 0,
        "jumpcloud:agentVersion": "1.178.0",
    }
    assert attrs(builtin, devices[2]) == {} and attrs(builtin, devices[3]) == {}
    with db.session() as s:
        assert {e.actor for e in audit.query(s, action="Update node attribute")} == {"system:sync:jumpcloud"}
    paths = [c.path for c in fake.calls]
    assert paths.count(SYSTEMS_PATH) == 2 and paths.count(INTERFACES_PATH) == 4  # 12 rows by 4, then an empty page

    before = fake.requests
    again = runner.run("jumpcloud")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert fake.requests > before
    status = status_of(integrations.get("jumpcloud"), clock())
    assert status["headline"].startswith("Last sync just now, 2 matches between 3 Tailscale devices")


def test_changes_remove_only_what_jumpcloud_no_longer_reports(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJumpCloud,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    serve(fake, [jumpcloud_system(0, "SER-0"), jumpcloud_system(1, "SER-1")])
    connect(integrations, fake)
    assert runner.run("jumpcloud").result == "ok"
    builtin.set_attribute(devices[1].id, "custom:keep", True, actor=Actor("cli:x"))
    serve(fake, [jumpcloud_system(0, "SER-0", fde={"active": True, "keyPresent": None})])
    report = runner.run("jumpcloud")
    assert (report.sets, report.deletes) == (0, 8)  # SER-0 loses fdeKeyPresent, SER-1 all seven
    assert "jumpcloud:fdeKeyPresent" not in attrs(builtin, devices[0])
    assert attrs(builtin, devices[1]) == {"custom:keep": True}


@pytest.mark.parametrize("failing_path", [SYSTEMS_PATH, INTERFACES_PATH])
def test_failure_mid_fetch_writes_and_deletes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJumpCloud,
    builtin: BuiltinTailnet,
    devices: list[Device],
    failing_path: str,
) -> None:
    serve(fake, [jumpcloud_system(i, f"SER-{i}") for i in range(3)])
    connect(integrations, fake)
    assert runner.run("jumpcloud").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    serve(fake, [jumpcloud_system(i, f"SER-{i}", active=False) for i in range(7)])
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing and (failing_path == SYSTEMS_PATH or done == 7):
            failing = True  # a systems page arrived (the first, or the last before System Insights)
            fake.fail_next(503, times=10)

    report = runner.run("jumpcloud", progress=fail_after_first_page)
    assert report.result == "error" and "503" in (report.error or "")
    assert failing_path in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("jumpcloud")
    assert integration.paused_until is None and integration.last_report["matches"] == 3


def test_a_refused_key_pauses_for_24_hours_until_the_settings_change(
    runner: SyncRunner, integrations: Integrations, fake: FakeJumpCloud, clock: FrozenClock
) -> None:
    integrations.add("jumpcloud", {"api_key": "jc-wrong-key", "base_url": fake.url}, actor=ADMIN)
    report = runner.run("jumpcloud")
    assert report.result == "error" and "refused the credentials" in (report.error or "")
    assert "jc-wrong-key" not in (report.error or "")
    assert integrations.get("jumpcloud").paused_until == clock() + timedelta(hours=24)
    clock.advance(hours=23)
    assert runner.due() == []
    integrations.update("jumpcloud", {"api_key": JUMPCLOUD_KEY}, actor=ADMIN)
    assert runner.due() == ["jumpcloud"]
    assert runner.run("jumpcloud").result == "ok"


def test_a_multi_tenant_admin_needs_the_org_id(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    with FakeJumpCloud(org_id="5f1e2d3c4b5a697887a6b5c4") as tenant:
        serve(tenant, [jumpcloud_system(0, "SER-0")])
        connect(integrations, tenant)
        assert runner.run("jumpcloud").result == "error"
        integrations.update("jumpcloud", {"org_id": "5f1e2d3c4b5a697887a6b5c4"}, actor=ADMIN)
        report = runner.run("jumpcloud")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0])["jumpcloud:present"] is True
        assert [(c.path, c.status) for c in tenant.calls] == [
            (SYSTEMS_PATH, 401),
            (SYSTEMS_PATH, 200),
            (INTERFACES_PATH, 200),
            (INTERFACES_PATH, 200),
        ]


def test_rate_limited_answers_are_waited_out(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJumpCloud,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    serve(fake, [jumpcloud_system(0, "SER-0")])
    connect(integrations, fake)
    fake.fail_next(429, times=2, retry_after=1)
    report = runner.run("jumpcloud")
    assert report.result == "ok", report.error
    assert [c.status for c in fake.calls][:3] == [429, 429, 200]
    assert attrs(builtin, devices[0])["jumpcloud:present"] is True


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake: FakeJumpCloud,
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
        serve(fake, [jumpcloud_system(0, "SER-0", mdm={"vendor": "none"}), jumpcloud_system(2, "SER-2")])
        connect(integrations, fake)
        report = runner.run("jumpcloud")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {
            "custom:jumpcloud_present": True,
            "custom:jumpcloud_active": True,
            "custom:jumpcloud_fdeActive": True,
            "custom:jumpcloud_fdeKeyPresent": True,
            "custom:jumpcloud_mdmVendor": "none",
            "custom:jumpcloud_policiesFailed": 0,
            "custom:jumpcloud_agentVersion": "1.178.0",
        }
        assert runner.run("jumpcloud").write_calls == 0
        serve(fake, [jumpcloud_system(0, "SER-0", mdm={"vendor": "none"})])
        third = runner.run("jumpcloud")
        assert (third.sets, third.deletes) == (0, 7)
        assert attrs(builtin, devices[2]) == {}
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
