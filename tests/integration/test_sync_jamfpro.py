"""Jamf Pro's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): MACs normalised
and matched, older servers read through v3 or v1, tokens renewed or replaced once, 429s retried."""

from __future__ import annotations

from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import jamfpro
from app.vendors.integrations import Integrations
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_jamfpro import JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, FakeJamfPro
from tests.integration.vendor_contract import ADMIN, JAMFPRO, Mono, attrs, jamf_reference, noop, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(JAMFPRO)


def test_the_client_reports_mac_addresses_normalised(fake: FakeJamfPro, mono: Mono) -> None:
    fake.set_agents(jamf_reference()[:2])
    client = jamfpro.JamfProClient(fake.url, JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, sleep=noop, clock=mono)
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
    fake.set_agents(jamf_reference()[1:2])  # lab-mini, serial H7QX9ZZZ1Q that no device reports
    JAMFPRO.connect(integrations, fake)
    report = runner.run("jamfpro")
    assert report.result == "ok", report.error
    assert (report.matches, report.matches_by_serial, report.matches_by_mac) == (1, 0, 1)
    assert builtin.get_attributes("201").attributes["jamfPro:fileVaultStatus"] == "NOT_ENCRYPTED"


def test_older_servers_are_read_through_v3_or_v1(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet, devices: list[Device], mono: Mono
) -> None:
    for versions, used in ((("v1", "v3"), "v3"), (("v1",), "v1")):
        with FakeJamfPro(jamf_reference()[:1], versions=versions, clock=mono) as old:
            if "jamfpro" in {i.vendor for i in integrations.list()}:
                integrations.update("jamfpro", {"url": old.url}, actor=ADMIN)
            else:
                JAMFPRO.connect(integrations, old)
            report = runner.run("jamfpro")
            assert report.result == "ok", report.error
            assert attrs(builtin, devices[0])["jamfPro:fileVaultStatus"] == "ALL_ENCRYPTED"
            assert {c.path for c in old.calls if c.status == 200} >= {f"/api/{used}/computers-inventory"}


def test_the_token_is_renewed_before_it_expires_during_a_long_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, devices: list[Device], mono: Mono
) -> None:
    """A 2-minute token; each page takes 100 s: the client renews after 90 s, the server never refuses one."""
    fake.token_lifetime = 120
    fake.set_agents(jamf_reference())
    JAMFPRO.connect(integrations, fake)

    def slow_pages(stage: str, done: int, total: int | None) -> None:
        if stage == "agents":
            mono.now += 100

    report = runner.run("jamfpro", progress=slow_pages)
    assert report.result == "ok", report.error
    assert fake.expired_refusals == 0 and fake.tokens_issued >= 2


def test_a_revoked_token_is_replaced_once(
    runner: SyncRunner, integrations: Integrations, fake: FakeJamfPro, devices: list[Device]
) -> None:
    fake.set_agents(jamf_reference())
    JAMFPRO.connect(integrations, fake)

    def revoke_after_first_page(stage: str, done: int, total: int | None) -> None:
        if stage == "agents" and done == 2:
            fake.expire_tokens()

    report = runner.run("jamfpro", progress=revoke_after_first_page)
    assert report.result == "ok", report.error
    assert fake.tokens_issued == 2
    assert [c.status for c in fake.calls if c.path.endswith("computers-inventory")].count(401) == 1


def test_rate_limited_requests_are_retried(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet, devices: list[Device], mono: Mono
) -> None:
    with FakeJamfPro(jamf_reference(), clock=mono) as limited:
        JAMFPRO.connect(integrations, limited)
        limited.fail_next(429, times=2, retry_after=1)
        report = runner.run("jamfpro")
        assert report.result == "ok", report.error
        assert [c.status for c in limited.calls][:2] == [429, 429]
