"""Per-vendor harnesses for the sync contract (``test_sync_contract.py``) and the fixtures every vendor's own sync
tests share.

A ``Harness`` says, for one vendor, how to serve it (its loopback fake and a client that pages by 2 and never
sleeps), how to connect it (settings that work, settings the fake refuses), its reference agents and what they must
write on the built-in tailnet (verbatim) and through the Tailscale adapter (``custom:`` keys), a change and what it
writes and deletes, and the agents a failed sync must not write. What only one vendor does (token renewal, v4/v3
fallback, policy keys, rate-limit headers) stays in its ``test_sync_<vendor>.py``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, AttributeValue, Device
from app.tailnet.tailscale import TailscaleTailnet
from app.vendors import crowdstrike, fleet, intune, jamfpro, jumpcloud, kandji, kolide, simplemdm
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.sync import SyncRunner
from tests.fakes.sim_time import Mono
from tests.fakes.vendor_crowdstrike import CROWDSTRIKE_CLIENT_ID, CROWDSTRIKE_SECRET, FakeCrowdStrike, falcon_host
from tests.fakes.vendor_fleet import DISK_POLICY, FLEET_TOKEN, SCREEN_LOCK_POLICY, FakeFleet, fleet_host, fleet_policy
from tests.fakes.vendor_intune import INTUNE_CLIENT_ID, INTUNE_SECRET, INTUNE_TENANT, FakeIntune, intune_device
from tests.fakes.vendor_jamfpro import JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, FakeJamfPro, jamf_computer
from tests.fakes.vendor_jumpcloud import (
    INTERFACES_PATH,
    JUMPCLOUD_KEY,
    SYSTEMS_PATH,
    FakeJumpCloud,
    jumpcloud_interfaces,
    jumpcloud_system,
)
from tests.fakes.vendor_kandji import KANDJI_TOKEN, FakeKandji, kandji_device
from tests.fakes.vendor_kolide import KOLIDE_KEY, FakeKolide, kolide_device
from tests.fakes.vendor_simplemdm import SIMPLEMDM_KEY, FakeSimpleMDM, simplemdm_device

ADMIN = "cli:admin"
Attrs = Mapping[str, AttributeValue]


def noop(_seconds: float) -> None:
    return None


def nothing(*_args: Any) -> None:
    return None


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    """A device's attributes without the ``node:`` ones the tailnet keeps itself."""
    return {k: v for k, v in builtin.get_attributes(device.id).attributes.items() if not k.startswith("node:")}


@contextmanager
def tailscale_remote(db: Database, builtin: BuiltinTailnet, clock: FrozenClock) -> Iterator[TailscaleTailnet]:
    """The Tailscale adapter against the built-in tailnet's API on a loopback port (a "real" tailnet)."""
    from app.tailnet.api import make_api
    from app.tailnet.auth import AuthStore
    from app.web.server import make_server

    server = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, key = AuthStore(db, clock=clock).create_api_key(actor=Actor("cli:setup"))
    remote = TailscaleTailnet(
        db, api_url=f"http://127.0.0.1:{server.server_port}", api_key=key, clock=clock, sleep=noop
    )
    try:
        yield remote
    finally:
        remote.close()
        server.shutdown()
        server.server_close()


@dataclasses.dataclass(frozen=True)
class Harness:
    """How the sync contract drives one vendor; see the module docstring."""

    vendor: str
    spec: Any  # VendorSpec
    client: Callable[[Mapping[str, str], Mono], Any]  # its client, paging by 2, never sleeping
    open_fake: Callable[[Mono], AbstractContextManager[Any]]
    serials: tuple[tuple[str, ...], ...]  # of the five tailnet devices
    settings: Callable[[Any], dict[str, str]]  # that the fake accepts
    refused: Mapping[str, str]  # settings overrides the fake refuses (the value must not show in the error)
    fixed: Mapping[str, str]  # the update that makes them work again
    refused_texts: tuple[str, ...]  # in the refusal's error
    load: Callable[[Any], None]  # the reference agents
    summary: str
    expected: Mapping[int, Attrs]  # device index → attributes after the reference sync (any other: none)
    custom: Mapping[int, Attrs]  # device index → custom: attributes through the Tailscale adapter
    change: Callable[[Any], None]  # agents after a change
    changed: tuple[int, int]  # (sets, deletes) of the sync after the change
    after_change: Mapping[int, Attrs]  # device index → attributes after it (device 1 also keeps custom:keep)
    load_many: Callable[[Any], None]  # more agents than one page, every value different
    failure_status: int = 503
    failure_text: str = ""  # also in the error of a failed fetch (e.g. the failing path)
    check_fetch: Callable[[Any], None] = nothing  # how the reference sync asked (paging, versions)
    check_second: Callable[[Any, int], None] = nothing  # (fake, requests before the second sync)
    check_refusal: Callable[[Any], None] = nothing

    def registry(self, mono: Mono) -> VendorRegistry:
        return VendorRegistry((dataclasses.replace(self.spec, build=lambda values: self.client(values, mono)),))

    def connect(self, integrations: Integrations, fake: Any, **overrides: str) -> None:
        integrations.add(self.vendor, {**self.settings(fake), **overrides}, actor=ADMIN)

    def add_devices(self, builtin: BuiltinTailnet) -> list[Device]:
        setup = Actor("cli:setup")
        return [
            builtin.add_device(name=f"host{i}", user=f"u{i}@example.com", serial_numbers=list(serials), actor=setup)
            for i, serials in enumerate(self.serials)
        ]


def sync_fixtures(harness: Harness) -> tuple[Any, ...]:
    """``mono, vendors, fake, integrations, runner, devices`` fixtures for one vendor's own test module:
    ``mono, vendors, fake, integrations, runner, devices = sync_fixtures(KOLIDE)``."""

    @pytest.fixture(name="mono")
    def mono_() -> Mono:
        return Mono()

    @pytest.fixture(name="vendors")
    def vendors_(mono: Mono) -> VendorRegistry:
        return harness.registry(mono)

    @pytest.fixture(name="fake")
    def fake_(mono: Mono) -> Iterator[Any]:
        with harness.open_fake(mono) as served:
            yield served

    @pytest.fixture(name="integrations")
    def integrations_(db: Database, clock: FrozenClock, vendors: VendorRegistry) -> Integrations:
        return Integrations(db, Cipher.from_secret("a test passphrase of some length"), clock=clock, vendors=vendors)

    @pytest.fixture(name="runner")
    def runner_(db: Database, builtin: BuiltinTailnet, integrations: Integrations, clock: FrozenClock) -> SyncRunner:
        return SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)

    @pytest.fixture(name="devices")
    def devices_(builtin: BuiltinTailnet) -> list[Device]:
        return harness.add_devices(builtin)

    return mono_, vendors_, fake_, integrations_, runner_, devices_


# -- CrowdStrike ---------------------------------------------------------------------------------------------------


def _crowdstrike_load(fake: FakeCrowdStrike) -> None:
    """The reference's two hosts, one without a serial, one with no tailnet device, one without an assessment."""
    hosts = [
        falcon_host(0, "C02ZK1ABMD6T", hostname="ana-mbp", platform_name="Mac"),
        falcon_host(1, "PF3ABC12", hostname="BO-LAPTOP"),
        falcon_host(2, None),
        falcon_host(3, "SER-9"),
        falcon_host(4, "SER-2"),
    ]
    ids = [h["device_id"] for h in hosts]
    fake.set_hosts(hosts, {ids[0]: 87, ids[1]: 54, ids[2]: 70, ids[3]: 12})


def _crowdstrike_change(fake: FakeCrowdStrike) -> None:
    hosts = [falcon_host(0, "C02ZK1ABMD6T", hostname="ana-mbp", platform_name="Mac"), falcon_host(1, "PF3ABC12")]
    fake.set_hosts(hosts, {hosts[0]["device_id"]: 91})  # host 1 lost its assessment


def _crowdstrike_many(fake: FakeCrowdStrike) -> None:
    hosts = [falcon_host(0, "C02ZK1ABMD6T"), falcon_host(1, "PF3ABC12")] + [falcon_host(i, None) for i in range(2, 7)]
    fake.set_hosts(hosts, {})  # every score would go


def _tokens_per_sync(fake: Any, _before: int) -> None:
    assert fake.tokens_issued == 2  # one per sync (each builds its client); every request of a sync reused it


CROWDSTRIKE = Harness(
    vendor="crowdstrike",
    spec=crowdstrike.SPEC,
    client=lambda v, mono: crowdstrike.CrowdStrikeClient(
        v["client_id"], v["client_secret"], base_url=v["base_url"], sleep=noop, clock=mono, page_size=2
    ),
    open_fake=lambda mono: FakeCrowdStrike(clock=mono),
    serials=(("C02ZK1ABMD6T",), ("PF3ABC12",), ("SER-2",), (), ("To Be Filled By O.E.M.",)),
    settings=lambda fake: {
        "client_id": CROWDSTRIKE_CLIENT_ID,
        "client_secret": CROWDSTRIKE_SECRET,
        "base_url": fake.url,
    },
    refused={"client_secret": "wrong-secret-value"},
    fixed={"client_secret": CROWDSTRIKE_SECRET},
    refused_texts=("refused",),
    load=_crowdstrike_load,
    summary="3 matches between 3 Tailscale devices with identifiers and 5 CrowdStrike agents",
    # device 2: matched, but no assessment: no score is written (not 0)
    expected={0: {"falcon:ztaScore": 87}, 1: {"falcon:ztaScore": 54}},
    custom={0: {"custom:falcon_ztaScore": 87}, 1: {"custom:falcon_ztaScore": 54}},
    change=_crowdstrike_change,
    changed=(1, 1),
    after_change={0: {"falcon:ztaScore": 91}, 1: {}},
    load_many=_crowdstrike_many,
    check_second=_tokens_per_sync,
)


# -- Intune --------------------------------------------------------------------------------------------------------


def _intune_reference() -> list[dict[str, Any]]:
    """The reference's two devices, a Linux one without a serial, one with no tailnet device, one with nulls."""
    return [
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


def _intune_change(fake: FakeIntune) -> None:
    found = _intune_reference()
    found[0] = {**found[0], "complianceState": "compliant", "isEncrypted": None}
    fake.set_devices(found[:2])  # device 0 changed, the SER-2 device left Intune


def _intune_many(fake: FakeIntune) -> None:
    changed = [{**d, "complianceState": "noncompliant"} for d in _intune_reference()]
    fake.set_devices(changed + [intune_device(i) for i in range(9)])


_INTUNE_FIRST = {
    "complianceState": "inGracePeriod",
    "azureADRegistered": False,
    "deviceRegistrationState": "notRegistered",
    "isSupervised": True,
    "isEncrypted": False,
    "managedDeviceOwnerType": "personal",
}
_INTUNE_DEFAULTS = {
    "complianceState": "compliant",
    "azureADRegistered": True,
    "deviceRegistrationState": "registered",
    "isSupervised": False,
    "isEncrypted": True,
    "managedDeviceOwnerType": "company",
}

INTUNE = Harness(
    vendor="intune",
    spec=intune.SPEC,
    client=lambda v, mono: intune.IntuneClient(
        v["tenant_id"],
        v["client_id"],
        v["client_secret"],
        login_url=v["login_url"],
        graph_url=v["graph_url"],
        sleep=noop,
        clock=mono,
        page_size=2,
    ),
    open_fake=lambda mono: FakeIntune(clock=mono),
    serials=(("C02ZK1ABMD6T",), ("PF3ABC12",), ("SER-2",), (), ("To Be Filled By O.E.M.",)),
    settings=lambda fake: {
        "tenant_id": INTUNE_TENANT,
        "client_id": INTUNE_CLIENT_ID,
        "client_secret": INTUNE_SECRET,
        "login_url": fake.url,
        "graph_url": fake.url,
    },
    refused={"client_secret": "wrong-secret-value"},
    fixed={"client_secret": INTUNE_SECRET},
    refused_texts=("refused",),
    load=lambda fake: fake.set_devices(_intune_reference()),
    summary="3 matches between 3 Tailscale devices with identifiers and 5 Intune agents",
    expected={
        0: {f"intune:{k}": v for k, v in _INTUNE_FIRST.items()},
        1: {f"intune:{k}": v for k, v in _INTUNE_DEFAULTS.items()},
        # nulls ("not collected") leave the attribute unset, never false
        2: {
            "intune:complianceState": "noncompliant",
            "intune:azureADRegistered": True,
            "intune:deviceRegistrationState": "registered",
            "intune:managedDeviceOwnerType": "company",
        },
    },
    custom={0: {f"custom:intune_{k}": v for k, v in _INTUNE_FIRST.items()}},
    change=_intune_change,
    changed=(1, 5),
    after_change={
        0: {
            f"intune:{k}": v for k, v in {**_INTUNE_FIRST, "complianceState": "compliant"}.items() if k != "isEncrypted"
        },
        1: {f"intune:{k}": v for k, v in _INTUNE_DEFAULTS.items()},
        2: {},
    },
    load_many=_intune_many,
    check_second=_tokens_per_sync,
)


# -- Jamf Pro ------------------------------------------------------------------------------------------------------


def jamf_reference() -> list[dict[str, Any]]:
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


def _jamf_fetch(fake: FakeJamfPro) -> None:
    inventory = [c for c in fake.calls if c.path.endswith("computers-inventory")]
    assert [(c.path, c.params["page"]) for c in inventory] == [("/api/v4/computers-inventory", p) for p in "012"]


_JAMF_FIRST = {
    "jamfPro:remoteManaged": True,
    "jamfPro:supervised": True,
    "jamfPro:firewallEnabled": True,  # the newer of the two records for this serial
    "jamfPro:fileVaultStatus": "ALL_ENCRYPTED",
    "jamfPro:SIPEnabled": "ENABLED",
}

JAMFPRO = Harness(
    vendor="jamfpro",
    spec=jamfpro.SPEC,
    client=lambda v, mono: jamfpro.JamfProClient(
        v["url"], v["client_id"], v["client_secret"], sleep=noop, page_size=2, clock=mono
    ),
    open_fake=lambda mono: FakeJamfPro(clock=mono),
    serials=(("C02ZK1ABMD6T",), ("H7QX9ZZZ1Q",), ("SER-2",), (), ("System Serial Number",)),
    settings=lambda fake: {"url": fake.url, "client_id": JAMF_CLIENT_ID, "client_secret": JAMF_CLIENT_SECRET},
    refused={"client_secret": "not-the-secret-value"},
    fixed={"client_secret": JAMF_CLIENT_SECRET},
    refused_texts=("refused the client credentials",),
    load=lambda fake: fake.set_agents(jamf_reference()),
    summary="2 matches between 3 Tailscale devices with identifiers and 5 Jamf Pro agents",
    expected={
        0: _JAMF_FIRST,
        1: {
            "jamfPro:remoteManaged": False,
            "jamfPro:supervised": False,
            "jamfPro:firewallEnabled": False,
            "jamfPro:fileVaultStatus": "NOT_ENCRYPTED",
            "jamfPro:SIPEnabled": "DISABLED",
        },
    },
    custom={  # strings keep their underscores
        1: {
            "custom:jamfPro_remoteManaged": False,
            "custom:jamfPro_supervised": False,
            "custom:jamfPro_firewallEnabled": False,
            "custom:jamfPro_fileVaultStatus": "NOT_ENCRYPTED",
            "custom:jamfPro_SIPEnabled": "DISABLED",
        }
    },
    change=lambda fake: fake.set_agents([jamf_computer(16, "C02ZK1ABMD6T", security={"firewallEnabled": False})]),
    changed=(1, 5),
    after_change={0: {**_JAMF_FIRST, "jamfPro:firewallEnabled": False}, 1: {}},
    load_many=lambda fake: fake.set_agents(
        [jamf_computer(i, f"X-{i}") for i in range(6)]
        + [jamf_computer(16, "C02ZK1ABMD6T", security={"firewallEnabled": False})]
    ),
    check_fetch=_jamf_fetch,
)


# -- Kandji --------------------------------------------------------------------------------------------------------


def kandji_reference() -> list[dict[str, Any]]:
    """The reference's Mac and iPad, a device without a serial, one for no tailnet device, an older duplicate."""
    return [
        kandji_device(0, "C02ZK1ABMD6T", device__name="ana-mbp"),
        kandji_device(
            1, "DMPXK2ZZQ1GC", device__family="iPad", agent_installed=None, agent_version=None, last_checkin_agent=None
        ),
        kandji_device(2, None),
        kandji_device(3, "NOT-IN-TAILNET"),
        kandji_device(4, "c02zk1abmd6t", mdm_enabled=False, last_checkin="2020-01-01T00:00:00.000000+00:00"),
    ]


def _kandji_fetch(fake: FakeKandji) -> None:
    offsets = [c.params["offset"] for c in fake.calls]
    assert offsets == ["0", "2", "4"] and all(c.params["sort_by"] == "device_id" for c in fake.calls)


KANDJI = Harness(
    vendor="kandji",
    spec=kandji.SPEC,
    client=lambda v, _mono: kandji.KandjiClient(v["api_url"], v["api_token"], sleep=noop, page_size=2),
    open_fake=lambda _mono: FakeKandji(),
    serials=(("C02ZK1ABMD6T",), ("DMPXK2ZZQ1GC",), ("SER-2",), (), ("Default string",)),
    settings=lambda fake: {"api_url": fake.url, "api_token": KANDJI_TOKEN},
    refused={"api_token": "revoked-token-value"},
    fixed={"api_token": KANDJI_TOKEN},
    refused_texts=("refused the credentials",),
    load=lambda fake: fake.set_agents(kandji_reference()),
    summary="2 matches between 3 Tailscale devices with identifiers and 5 Kandji agents",
    expected={
        0: {"kandji:mdmEnabled": True, "kandji:agentInstalled": True},
        1: {"kandji:mdmEnabled": True},  # no agent on an iPad: unset, not false
    },
    custom={
        0: {"custom:kandji_mdmEnabled": True, "custom:kandji_agentInstalled": True},
        1: {"custom:kandji_mdmEnabled": True},
    },
    change=lambda fake: fake.set_agents([kandji_device(0, "C02ZK1ABMD6T", agent_installed=False)]),
    changed=(1, 1),
    after_change={0: {"kandji:mdmEnabled": True, "kandji:agentInstalled": False}, 1: {}},
    load_many=lambda fake: fake.set_agents(
        [kandji_device(i, f"X-{i}") for i in range(6)] + [kandji_device(9, "C02ZK1ABMD6T", mdm_enabled=False)]
    ),
    failure_status=502,
    check_fetch=_kandji_fetch,
)


# -- Kolide --------------------------------------------------------------------------------------------------------


def _kolide_reference() -> list[dict[str, Any]]:
    return [
        kolide_device(0, "C02ZK1ABMD6T", name="ana-mbp"),
        kolide_device(1, "PF3ABC12", name="bo-thinkpad", auth_state="Will Block", will_block_at="2026-12-02T16:00:00Z"),
        kolide_device(2, None, auth_state="Blocked"),  # no serial: counted, never matched
        kolide_device(3, "SER-2", auth_state=None),  # matched, state not collected: nothing written
        kolide_device(4, "SER-404", auth_state="Notified"),  # no such device
    ]


def _kolide_fetch(fake: FakeKolide) -> None:
    cursors = [c.params.get("cursor") for c in fake.calls]
    assert cursors[0] is None and all(cursors[1:]) and len(set(cursors)) == 3  # followed next_cursor
    assert len(fake.calls) == 3 and set(fake.versions_seen) == {"2023-05-26"}


KOLIDE = Harness(
    vendor="kolide",
    spec=kolide.SPEC,
    client=lambda v, _mono: kolide.KolideClient(v["api_key"], base_url=v["base_url"], sleep=noop, page_size=2),
    open_fake=lambda _mono: FakeKolide(),
    serials=(("C02ZK1ABMD6T",), ("pf3abc12",), ("SER-2",), (), ("Default string",)),
    settings=lambda fake: {"api_key": KOLIDE_KEY, "base_url": fake.url},
    refused={"api_key": "k2sk_v1_wrong_key"},
    fixed={"api_key": KOLIDE_KEY},
    refused_texts=("refused the credentials",),
    load=lambda fake: fake.set_agents(_kolide_reference()),
    summary="3 matches between 3 Tailscale devices with identifiers and 5 Kolide agents",
    # device 2: auth_state null → unset, never a guessed value
    expected={0: {"kolide:authState": "Good"}, 1: {"kolide:authState": "Will Block"}},  # verbatim, space kept
    custom={0: {"custom:kolide_authState": "Good"}, 1: {"custom:kolide_authState": "Will_Block"}},
    change=lambda fake: fake.set_agents([kolide_device(0, "C02ZK1ABMD6T", auth_state="Blocked")]),
    changed=(1, 1),
    after_change={0: {"kolide:authState": "Blocked"}, 1: {}},
    load_many=lambda fake: fake.set_agents(
        [kolide_device(i, "C02ZK1ABMD6T" if i == 0 else None, auth_state="Blocked") for i in range(7)]
    ),
    check_fetch=_kolide_fetch,
)


# -- Fleet ---------------------------------------------------------------------------------------------------------

FIREWALL_POLICY = {
    **SCREEN_LOCK_POLICY,
    "id": 11,
    "name": "Firewall",
    "description": "Tailscale: fleetPolicy:firewallOn",
}
LUKS_POLICY = {**DISK_POLICY, "id": 8, "name": "LUKS on", "platform": "linux"}


def fleet_reference() -> list[dict[str, Any]]:
    return [
        fleet_host(1, "C02ZK1ABMD6T", display_name="ana-mbp"),  # passes the disk policy
        fleet_host(2, "SER-1", policies=[fleet_policy(DISK_POLICY, "fail"), fleet_policy(FIREWALL_POLICY, "pass")]),
        fleet_host(3, "SER-2", policies=[fleet_policy(DISK_POLICY, "")]),  # not run yet: fleet:present only
        fleet_host(17, "", platform="ubuntu", policies=[fleet_policy(LUKS_POLICY, "fail")]),  # no serial
        fleet_host(5, "SER-404"),
    ]


def _fleet_fetch(fake: FakeFleet) -> None:
    assert [c.params["page"] for c in fake.calls] == ["0", "1", "2"]
    assert all(c.params["populate_policies"] == "true" for c in fake.calls)


FLEET = Harness(
    vendor="fleet",
    spec=fleet.SPEC,
    client=lambda v, _mono: fleet.FleetClient(
        v["url"], v["api_token"], team_id=v.get("team_id"), sleep=noop, page_size=2
    ),
    open_fake=lambda _mono: FakeFleet(),
    serials=(("C02ZK1ABMD6T",), ("SER-1",), ("SER-2",), (), ("0",)),
    settings=lambda fake: {"url": fake.url, "api_token": FLEET_TOKEN},
    refused={"api_token": "wrong-fleet-token"},
    fixed={"api_token": FLEET_TOKEN},
    refused_texts=("refused the credentials", "Authentication required"),
    load=lambda fake: fake.set_agents(fleet_reference()),
    summary="3 matches between 3 Tailscale devices with identifiers and 5 Fleet agents",
    expected={
        0: {"fleet:present": True, "fleetPolicy:diskEncrypted": True},
        1: {"fleet:present": True, "fleetPolicy:diskEncrypted": False, "fleetPolicy:firewallOn": True},
        2: {"fleet:present": True},
    },
    custom={0: {"custom:fleet_present": True, "custom:fleetPolicy_diskEncrypted": True}},
    change=lambda fake: fake.set_agents([fleet_host(1, "C02ZK1ABMD6T", policies=[])]),
    changed=(0, 5),
    after_change={0: {"fleet:present": True}, 1: {}, 2: {}},
    load_many=lambda fake: fake.set_agents(
        [fleet_host(i, "C02ZK1ABMD6T" if i == 0 else None, policies=[]) for i in range(7)]
    ),
    failure_status=502,
    check_fetch=_fleet_fetch,
)


# -- JumpCloud -----------------------------------------------------------------------------------------------------


def jumpcloud_serve(fake: FakeJumpCloud, systems: list[dict[str, Any]]) -> None:
    """Systems and, for each, the fake's interface rows (System Insights)."""
    fake.set_agents(systems)
    fake.set_interfaces([row for n in range(len(systems)) for row in jumpcloud_interfaces(n)])


def _jumpcloud_load(fake: FakeJumpCloud) -> None:
    jumpcloud_serve(
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


def _jumpcloud_fetch(fake: FakeJumpCloud) -> None:
    paths = [c.path for c in fake.calls]
    assert paths.count(SYSTEMS_PATH) == 2 and paths.count(INTERFACES_PATH) == 4  # 12 rows by 4, then an empty page


_JUMPCLOUD_FIRST = {
    "present": True,
    "active": True,
    "fdeActive": True,
    "fdeKeyPresent": True,
    "mdmVendor": "external",
    "policiesFailed": 2,
    "agentVersion": "1.180.2",
}

JUMPCLOUD = Harness(
    vendor="jumpcloud",
    spec=jumpcloud.SPEC,
    client=lambda v, _mono: jumpcloud.JumpCloudClient(
        v["api_key"],
        org_id=v.get("org_id"),
        base_url=v["base_url"],
        mac_lookup=jumpcloud.parse_mac_lookup(v.get("mac_lookup")),
        sleep=noop,
        page_size=2,
        interface_page_size=4,
    ),
    open_fake=lambda _mono: FakeJumpCloud(),
    serials=(("SER-0",), ("baseboard-x", " ser-1 "), ("SER-2",), (), ("To Be Filled By O.E.M.",)),
    settings=lambda fake: {"api_key": JUMPCLOUD_KEY, "base_url": fake.url},
    refused={"api_key": "jc-wrong-key"},
    fixed={"api_key": JUMPCLOUD_KEY},
    refused_texts=("refused the credentials",),
    load=_jumpcloud_load,
    summary="2 matches between 3 Tailscale devices with identifiers and 4 JumpCloud agents",
    expected={
        0: {f"jumpcloud:{k}": v for k, v in _JUMPCLOUD_FIRST.items()},
        1: {  # keyPresent null: unset, not false
            "jumpcloud:present": True,
            "jumpcloud:active": False,
            "jumpcloud:fdeActive": False,
            "jumpcloud:mdmVendor": "internal",
            "jumpcloud:policiesFailed": 0,
            "jumpcloud:agentVersion": "1.178.0",
        },
    },
    custom={0: {f"custom:jumpcloud_{k}": v for k, v in _JUMPCLOUD_FIRST.items()}},
    change=lambda fake: jumpcloud_serve(fake, [jumpcloud_system(0, "SER-0", fde={"active": True, "keyPresent": None})]),
    changed=(3, 7),  # SER-0: mdmVendor, policiesFailed, agentVersion change, fdeKeyPresent goes; SER-1: all six
    after_change={
        0: {
            "jumpcloud:present": True,
            "jumpcloud:active": True,
            "jumpcloud:fdeActive": True,
            "jumpcloud:mdmVendor": "internal",
            "jumpcloud:policiesFailed": 0,
            "jumpcloud:agentVersion": "1.178.0",
        },
        1: {},
    },
    load_many=lambda fake: jumpcloud_serve(fake, [jumpcloud_system(i, f"SER-{i}", active=False) for i in range(7)]),
    failure_text=SYSTEMS_PATH,
    check_fetch=_jumpcloud_fetch,
)


# -- SimpleMDM -----------------------------------------------------------------------------------------------------

SIMPLEMDM_IPHONE = {
    "wifi_mac": "f0:db:e2:df:e9:2f",
    "is_supervised": False,
    "is_dep_enrollment": False,
    "filevault_enabled": False,
    "firewall": {"enabled": None, "block_all_incoming": None, "stealth_mode": None},
    "system_integrity_protection_enabled": None,
    "passcode_compliant": True,
}


def _simplemdm_load(fake: FakeSimpleMDM) -> None:
    fake.set_agents(
        [
            simplemdm_device(
                0, "SER-0", firewall={"enabled": False, "block_all_incoming": False, "stealth_mode": None}
            ),
            simplemdm_device(1, "ser-1", **SIMPLEMDM_IPHONE),
            simplemdm_device(2, None),
            simplemdm_device(3, "SER-9"),
            simplemdm_device(4, None, status="awaiting enrollment"),  # not listed: not asked for
        ]
    )


def _simplemdm_fetch(fake: FakeSimpleMDM) -> None:
    assert [c.params.get("starting_after") for c in fake.calls] == [None, "101"]


def _simplemdm_refusal(fake: FakeSimpleMDM) -> None:
    assert fake.calls[-1].status == 401


_SIMPLEMDM_FIRST = {
    "present": True,
    "status": "enrolled",
    "supervised": True,
    "fileVaultEnabled": True,
    "firewallEnabled": False,
    "SIPEnabled": True,
    "passcodeCompliant": True,
    "depEnrolled": True,
}

SIMPLEMDM = Harness(
    vendor="simplemdm",
    spec=simplemdm.SPEC,
    client=lambda v, _mono: simplemdm.SimpleMDMClient(v["api_key"], base_url=v["base_url"], sleep=noop, page_size=2),
    open_fake=lambda _mono: FakeSimpleMDM(),
    serials=(("SER-0",), ("baseboard-x", " ser-1 "), ("SER-2",), (), ("To Be Filled By O.E.M.",)),
    settings=lambda fake: {"api_key": SIMPLEMDM_KEY, "base_url": fake.url},
    refused={"api_key": "smdm-revoked-key"},
    fixed={"api_key": SIMPLEMDM_KEY},
    refused_texts=("refused the credentials",),
    load=_simplemdm_load,
    summary="2 matches between 3 Tailscale devices with identifiers and 4 SimpleMDM agents",
    expected={
        0: {f"simplemdm:{k}": v for k, v in _SIMPLEMDM_FIRST.items()},
        1: {  # an iPhone: no firewall, no SIP (null → unset, not false)
            "simplemdm:present": True,
            "simplemdm:status": "enrolled",
            "simplemdm:supervised": False,
            "simplemdm:fileVaultEnabled": False,
            "simplemdm:passcodeCompliant": True,
            "simplemdm:depEnrolled": False,
        },
    },
    custom={0: {f"custom:simplemdm_{k}": v for k, v in _SIMPLEMDM_FIRST.items()}},
    change=lambda fake: fake.set_agents([simplemdm_device(0, "SER-0", filevault_enabled=None, is_supervised=False)]),
    changed=(2, 7),  # SER-0: supervised and firewall change, FileVault goes; ser-1: all six
    after_change={
        0: {
            **{f"simplemdm:{k}": v for k, v in _SIMPLEMDM_FIRST.items() if k != "fileVaultEnabled"},
            "simplemdm:supervised": False,
            "simplemdm:firewallEnabled": True,
        },
        1: {},
    },
    load_many=lambda fake: fake.set_agents(
        [simplemdm_device(i, f"SER-{i}", filevault_enabled=False) for i in range(7)]
    ),
    failure_status=502,
    check_fetch=_simplemdm_fetch,
    check_refusal=_simplemdm_refusal,
)

HARNESSES: tuple[Harness, ...] = (CROWDSTRIKE, INTUNE, JAMFPRO, KANDJI, KOLIDE, FLEET, JUMPCLOUD, SIMPLEMDM)
