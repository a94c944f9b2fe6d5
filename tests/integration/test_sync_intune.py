"""The sync contract for Microsoft Intune: FakeIntune (Entra token + Graph) → IntuneClient → SyncRunner → the built-in
tailnet (or ``custom:`` keys through the Tailscale adapter)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import intune
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_intune import INTUNE_CLIENT_ID, INTUNE_SECRET, INTUNE_TENANT, FakeIntune, intune_device

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


class Mono:
    """Monotonic seconds shared by the client (token lifetimes) and the fake (token expiry)."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mono() -> Mono:
    return Mono()


@pytest.fixture
def vendors(mono: Mono) -> VendorRegistry:
    """The real Intune spec with a client that does not sleep and pages by 2."""

    def build(values: Any) -> intune.IntuneClient:
        return intune.IntuneClient(
            values["tenant_id"],
            values["client_id"],
            values["client_secret"],
            login_url=values["login_url"],
            graph_url=values["graph_url"],
            sleep=_noop,
            clock=mono,
            page_size=2,
        )

    return VendorRegistry((dataclasses.replace(intune.SPEC, build=build),))


@pytest.fixture
def fake(mono: Mono) -> Iterator[FakeIntune]:
    with FakeIntune(clock=mono) as served:
        yield served


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
        for i, serials in enumerate([["C02ZK1ABMD6T"], ["PF3ABC12"], ["SER-2"], [], ["To Be Filled By O.E.M."]])
    ]


def connect(integrations: Integrations, fake: FakeIntune, secret: str = INTUNE_SECRET) -> None:
    values = {
        "tenant_id": INTUNE_TENANT,
        "client_id": INTUNE_CLIENT_ID,
        "client_secret": secret,
        "login_url": fake.url,
        "graph_url": fake.url,
    }
    integrations.add("intune", values, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def sample(fake: FakeIntune) -> list[dict[str, Any]]:
    """The reference's two devices, a Linux one without a serial, one with no tailnet device, one with nulls."""
    devices = [
        intune_device(
            0,
            "C02ZK1ABMD6T",
            deviceName="Bo's MacBook Pro",
            operatingSystem="macOS",
            complianceState="inGracePeriod",
            azureADRegistered=False,
            deviceRegistrationState="notRegistered",
            isSupervised=True,
            isEncrypted=False,
            managedDeviceOwnerType="personal",
        ),
        intune_device(1, "PF3ABC12", deviceName="LAPTOP-01"),
        intune_device(2, None, operatingSystem="Linux"),
        intune_device(3, "SER-9"),
        intune_device(4, "SER-2", isEncrypted=None, isSupervised=None, complianceState="noncompliant"),
    ]
    fake.set_devices(devices)
    return devices


def test_values_verbatim_and_second_sync_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeIntune,
    builtin: BuiltinTailnet,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    sample(fake)
    connect(integrations, fake)
    report = runner.run("intune")
    assert report.result == "ok", report.error
    assert report.summary == "3 matches between 3 Tailscale devices with identifiers and 5 Intune agents"
    assert report.agents_without_serial == 1
    assert attrs(builtin, devices[0]) == {
        "intune:complianceState": "inGracePeriod",
        "intune:azureADRegistered": False,
        "intune:deviceRegistrationState": "notRegistered",
        "intune:isSupervised": True,
        "intune:isEncrypted": False,
        "intune:managedDeviceOwnerType": "personal",
    }
    assert attrs(builtin, devices[1])["intune:complianceState"] == "compliant"
    # nulls ("not collected") leave the attribute unset, never false
    assert attrs(builtin, devices[2]) == {
        "intune:complianceState": "noncompliant",
        "intune:azureADRegistered": True,
        "intune:deviceRegistrationState": "registered",
        "intune:managedDeviceOwnerType": "company",
    }
    assert attrs(builtin, devices[3]) == {} and attrs(builtin, devices[4]) == {}
    before = len(fake.api_calls())
    again = runner.run("intune")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert len(fake.api_calls()) > before
    assert fake.tokens_issued == 2  # one per sync (each builds its client); every request of a sync reused it
    status = status_of(integrations.get("intune"), clock())
    assert status["headline"].startswith("Last sync just now, 3 matches between 3 Tailscale devices")


def test_token_renewed_before_expiry_mid_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeIntune, devices: list[Device], mono: Mono
) -> None:
    sample(fake)
    fake.token_ttl = 120  # the next token lives two minutes on the fake's clock
    connect(integrations, fake)

    def time_passes(stage: str, done: int, total: int | None) -> None:
        if stage == "agents":
            mono.now += 95  # 25 s left after the first page: inside the renewal margin, not yet expired

    assert runner.run("intune", progress=time_passes).result == "ok"
    assert fake.tokens_issued >= 2
    assert all(c.status != 401 for c in fake.api_calls())  # renewed before it ran out, never refused


def test_token_revoked_mid_sync_is_replaced_once(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeIntune,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    sample(fake)
    connect(integrations, fake)
    revoked = False

    def revoke(stage: str, done: int, total: int | None) -> None:
        nonlocal revoked
        if stage == "agents" and not revoked:
            revoked = True
            fake.expire_tokens()

    report = runner.run("intune", progress=revoke)
    assert report.result == "ok", report.error
    assert [c.status for c in fake.api_calls()].count(401) == 1
    assert fake.tokens_issued == 2
    assert attrs(builtin, devices[1])["intune:isEncrypted"] is True


def test_score_change_and_removal(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeIntune,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    found = sample(fake)
    connect(integrations, fake)
    runner.run("intune")
    found[0] = {**found[0], "complianceState": "compliant", "isEncrypted": None}
    fake.set_devices(found[:2])  # device 0 changed, the SER-2 device left Intune
    report = runner.run("intune")
    assert (report.sets, report.deletes) == (1, 5)
    assert attrs(builtin, devices[0])["intune:complianceState"] == "compliant"
    assert "intune:isEncrypted" not in attrs(builtin, devices[0])
    assert attrs(builtin, devices[2]) == {}


def test_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeIntune,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    found = sample(fake)
    connect(integrations, fake)
    assert runner.run("intune").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_devices([{**d, "complianceState": "noncompliant"} for d in found] + [intune_device(i) for i in range(9)])
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(503, times=20)

    report = runner.run("intune", progress=fail_after_first_page)
    assert report.result == "error" and "503" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    assert integrations.get("intune").paused_until is None


def test_auth_failure_pauses_24_hours(
    runner: SyncRunner, integrations: Integrations, fake: FakeIntune, clock: FrozenClock
) -> None:
    connect(integrations, fake, secret="wrong-secret-value")
    report = runner.run("intune")
    assert report.result == "error" and "refused" in (report.error or "")
    assert "wrong-secret-value" not in (report.error or "")
    assert integrations.get("intune").paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    integrations.update("intune", {"client_secret": INTUNE_SECRET}, actor=ADMIN)
    assert runner.due() == ["intune"]
    assert runner.run("intune").result == "ok"


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake: FakeIntune,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    """On a real tailnet (the Tailscale adapter against the built-in API) values go to custom:intune_<name>."""
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
        sample(fake)
        connect(integrations, fake)
        report = runner.run("intune")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {
            "custom:intune_complianceState": "inGracePeriod",
            "custom:intune_azureADRegistered": False,
            "custom:intune_deviceRegistrationState": "notRegistered",
            "custom:intune_isSupervised": True,
            "custom:intune_isEncrypted": False,
            "custom:intune_managedDeviceOwnerType": "personal",
        }
        assert runner.run("intune").write_calls == 0
    finally:
        remote.close()
        server.shutdown()
        server.server_close()


def test_client_waits_out_graph_throttling(mono: Mono) -> None:
    """Against the fake's 429s (Retry-After seconds, then none at all) the client waits and completes the list."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        mono.now += seconds

    for send_retry_after in (True, False):
        slept.clear()
        with FakeIntune([intune_device(i) for i in range(7)], rate_limit=2, clock=mono) as served:
            served.send_retry_after = send_retry_after
            client = intune.IntuneClient(
                INTUNE_TENANT,
                INTUNE_CLIENT_ID,
                INTUNE_SECRET,
                login_url=served.url,
                graph_url=served.url,
                sleep=sleep,
                clock=mono,
                page_size=2,
            )
            with client:
                assert len(client.fetch_agents()) == 7
            assert served.rate_limited > 0 and slept
            statuses = [c.status for c in served.api_calls()]
            assert statuses.count(200) == 4 and set(statuses) == {200, 429}


def test_matches_by_wifi_mac_and_stale_devices_write_no_posture(
    runner: SyncRunner, integrations: Integrations, fake: FakeIntune, builtin: BuiltinTailnet, clock: FrozenClock
) -> None:
    """A device without a serial matches by Intune's bare-hex Wi-Fi MAC; a device that has not synced within the
    integration's max_agent_age gets intune:stale instead of its posture."""
    identity = {"serialNumbers": [], "ifaceHardwareAddrs": ["3c:2c:30:00:00:07"]}
    builtin.import_devices(
        [{"id": "701", "nodeId": "nMACIN0701", "name": "mac7.example.ts.net", "postureIdentity": identity}],
        actor=Actor("cli:setup"),
    )
    old = builtin.add_device(name="old", user="o@example.com", serial_numbers=["SER-8"], actor=Actor("cli:setup"))
    seen_now = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    long_ago = (clock() - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fake.set_devices(
        [
            intune_device(7, None, lastSyncDateTime=seen_now, complianceState="conflict"),
            intune_device(8, "SER-8", lastSyncDateTime=long_ago),
        ]
    )
    connect(integrations, fake)
    integrations.set_max_agent_age("intune", timedelta(days=7), actor=ADMIN)
    report = runner.run("intune")
    assert report.result == "ok", report.error
    assert (report.matches_by_serial, report.matches_by_mac, report.stale_matches) == (1, 1, 1)
    assert builtin.get_attributes("701").attributes["intune:complianceState"] == "conflict"
    assert attrs(builtin, old) == {"intune:stale": True}
