"""The sync contract for Jamf Pro: FakeJamfPro (OAuth + computers inventory) → JamfProClient → SyncRunner →
the built-in tailnet (or custom: keys through the Tailscale adapter)."""

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
from app.vendors import jamfpro
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_jamfpro import JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, FakeJamfPro, jamf_computer

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


class Ticks:
    """Monotonic seconds shared by the fake (token expiry) and the client (token renewal)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def vendors(ticks: Ticks) -> VendorRegistry:
    """The real Jamf Pro spec; its client pages by 2, does not sleep, and shares the fake's clock."""

    def build(values: Any) -> jamfpro.JamfProClient:
        return jamfpro.JamfProClient(
            values["url"], values["client_id"], values["client_secret"], sleep=_noop, page_size=2, clock=ticks
        )

    return VendorRegistry((dataclasses.replace(jamfpro.SPEC, build=build),))


@pytest.fixture
def fake(ticks: Ticks) -> Iterator[FakeJamfPro]:
    with FakeJamfPro(clock=ticks) as served:
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
        for i, serials in enumerate([["C02ZK1ABMD6T"], ["H7QX9ZZZ1Q"], ["SER-2"], [], ["System Serial Number"]])
    ]


def connect(integrations: Integrations, fake: FakeJamfPro, secret: str = JAMF_CLIENT_SECRET) -> None:
    integrations.add("jamfpro", {"url": fake.url, "client_id": JAMF_CLIENT_ID, "client_secret": secret}, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def the_sample() -> list[dict[str, Any]]:
    """The reference's two computers, one without a serial, one for no tailnet device, an older duplicate."""
    return [
        jamf_computer(16, "C02ZK1ABMD6T", general={"name": "ana-mbp"}),
        jamf_computer(
            22,
            "H7QX9ZZZ1Q",
            general={"name": "lab-mini", "remoteManagement": {"managed": False}, "supervised": False},
            hardware={"macAddress": "14:98:77:AA:BB:CC", "altMacAddress": None},
            security={"sipStatus": "DISABLED", "firewallEnabled": False},
            operating_system={"fileVault2Status": "NOT_ENCRYPTED"},
        ),
        jamf_computer(30, None),
        jamf_computer(31, "NOT-IN-TAILNET", security={"sipStatus": "NOT_COLLECTED"}),
        jamf_computer(
            40,
            "c02zk1abmd6t",
            general={"lastContactTime": "2020-01-01T00:00:00.000Z"},
            security={"firewallEnabled": False},
        ),
    ]


def test_sync_writes_values_verbatim_and_second_run_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJamfPro,
    builtin: BuiltinTailnet,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake)
    report = runner.run("jamfpro")
    assert report.result == "ok", report.error
    assert report.summary == "2 matches between 3 Tailscale devices with identifiers and 5 Jamf Pro agents"
    assert (report.agents_without_serial, report.duplicate_serials_resolved) == (1, 1)
    assert attrs(builtin, devices[0]) == {
        "jamfPro:remoteManaged": True,
        "jamfPro:supervised": True,
        "jamfPro:firewallEnabled": True,  # the newer of the two records for this serial
        "jamfPro:fileVaultStatus": "ALL_ENCRYPTED",
        "jamfPro:SIPEnabled": "ENABLED",
    }
    assert attrs(builtin, devices[1]) == {
        "jamfPro:remoteManaged": False,
        "jamfPro:supervised": False,
        "jamfPro:firewallEnabled": False,
        "jamfPro:fileVaultStatus": "NOT_ENCRYPTED",
        "jamfPro:SIPEnabled": "DISABLED",
    }
    assert attrs(builtin, devices[2]) == {} and attrs(builtin, devices[3]) == {}
    inventory = [c for c in fake.calls if c.path.endswith("computers-inventory")]
    assert [(c.path, c.params["page"]) for c in inventory] == [("/api/v4/computers-inventory", p) for p in "012"]

    before = fake.requests
    again = runner.run("jamfpro")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert fake.requests > before

    status = status_of(integrations.get("jamfpro"), clock())
    assert status["headline"].startswith("Last sync just now, 2 matches between 3 Tailscale devices")


def test_the_client_reports_mac_addresses_normalised(fake: FakeJamfPro, ticks: Ticks) -> None:
    fake.set_agents(the_sample()[:2])
    client = jamfpro.JamfProClient(fake.url, JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, sleep=_noop, clock=ticks)
    try:
        agents = {a.serial: a for a in client.fetch_agents()}
    finally:
        client.close()
    assert agents["C02ZK1ABMD6T"].mac_addresses == ("a483e7000010", "36c192000010")
    assert agents["H7QX9ZZZ1Q"].mac_addresses == ("149877aabbcc",)


def test_a_device_without_a_serial_matches_by_its_jamf_mac(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, builtin: BuiltinTailnet
) -> None:
    """A device reporting only interface MACs gets the posture of the computer whose hardware.macAddress it has."""
    identity = {"serialNumbers": [], "ifaceHardwareAddrs": ["14:98:77:aa:bb:cc"]}
    builtin.import_devices(
        [{"id": "201", "nodeId": "nJAMFMAC01", "name": "lab-mini.example.ts.net", "postureIdentity": identity}],
        actor=Actor("cli:setup"),
    )
    fake.set_agents(the_sample()[1:2])  # lab-mini, serial H7QX9ZZZ1Q that no device reports
    connect(integrations, fake)
    report = runner.run("jamfpro")
    assert report.result == "ok", report.error
    assert (report.matches, report.matches_by_serial, report.matches_by_mac) == (1, 0, 1)
    assert builtin.get_attributes("201").attributes["jamfPro:fileVaultStatus"] == "NOT_ENCRYPTED"


def test_older_servers_are_read_through_v3_or_v1(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet, devices: list[Device], ticks: Ticks
) -> None:
    for versions, used in ((("v1", "v3"), "v3"), (("v1",), "v1")):
        with FakeJamfPro(the_sample()[:1], versions=versions, clock=ticks) as old:
            if "jamfpro" in {i.vendor for i in integrations.list()}:
                integrations.update("jamfpro", {"url": old.url}, actor=ADMIN)
            else:
                connect(integrations, old)
            report = runner.run("jamfpro")
            assert report.result == "ok", report.error
            assert attrs(builtin, devices[0])["jamfPro:fileVaultStatus"] == "ALL_ENCRYPTED"
            assert {c.path for c in old.calls if c.status == 200} >= {f"/api/{used}/computers-inventory"}


def test_the_token_is_renewed_before_it_expires_during_a_long_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, devices: list[Device], ticks: Ticks
) -> None:
    """A 2-minute token; each page takes 100 s: the client renews after 90 s, the server never refuses one."""
    fake.token_lifetime = 120
    fake.set_agents(the_sample())
    connect(integrations, fake)

    def slow_pages(stage: str, done: int, total: int | None) -> None:
        if stage == "agents":
            ticks.now += 100

    report = runner.run("jamfpro", progress=slow_pages)
    assert report.result == "ok", report.error
    assert fake.expired_refusals == 0 and fake.tokens_issued >= 2


def test_a_revoked_token_is_replaced_once(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, devices: list[Device]
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake)

    def revoke_after_first_page(stage: str, done: int, total: int | None) -> None:
        if stage == "agents" and done == 2:
            fake.expire_tokens()

    report = runner.run("jamfpro", progress=revoke_after_first_page)
    assert report.result == "ok", report.error
    assert fake.tokens_issued == 2
    assert [c.status for c in fake.calls if c.path.endswith("computers-inventory")].count(401) == 1


def test_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake)
    assert runner.run("jamfpro").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_agents(
        [jamf_computer(i, f"X-{i}") for i in range(6)]
        + [jamf_computer(16, "C02ZK1ABMD6T", security={"firewallEnabled": False})]
    )
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(503, times=10)

    report = runner.run("jamfpro", progress=fail_after_first_page)
    assert report.result == "error" and "503" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("jamfpro")
    assert integration.paused_until is None and integration.last_result == "error"


def test_rate_limited_requests_are_retried(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet, devices: list[Device], ticks: Ticks
) -> None:
    with FakeJamfPro(the_sample(), clock=ticks) as limited:
        connect(integrations, limited)
        limited.fail_next(429, times=2, retry_after=1)
        report = runner.run("jamfpro")
        assert report.result == "ok", report.error
        assert [c.status for c in limited.calls][:2] == [429, 429]


def test_wrong_client_secret_pauses_for_24_hours(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, clock: FrozenClock
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake, secret="not-the-secret-value")
    report = runner.run("jamfpro")
    assert report.result == "error" and "refused the client credentials" in (report.error or "")
    assert "not-the-secret-value" not in (report.error or "")
    assert integrations.get("jamfpro").paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    integrations.update("jamfpro", {"client_secret": JAMF_CLIENT_SECRET}, actor=ADMIN)
    assert runner.due() == ["jamfpro"]
    assert runner.run("jamfpro").result == "ok"


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake: FakeJamfPro,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    """Through the Tailscale adapter the values land in custom:jamfPro_* keys (strings keep their underscores)."""
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
        fake.set_agents(the_sample())
        connect(integrations, fake)
        report = runner.run("jamfpro")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[1]) == {
            "custom:jamfPro_remoteManaged": False,
            "custom:jamfPro_supervised": False,
            "custom:jamfPro_firewallEnabled": False,
            "custom:jamfPro_fileVaultStatus": "NOT_ENCRYPTED",
            "custom:jamfPro_SIPEnabled": "DISABLED",
        }
        assert runner.run("jamfpro").write_calls == 0
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
