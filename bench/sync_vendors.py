"""Per-vendor glue for ``bench/sync.py``: records in each vendor's real JSON shape, its loopback fake, its settings.

Every vendor gets the same serial plan (``sync.agent_serials``: own serials, null and placeholder serials,
reinstalls at the end) turned into records by the factories of its fake in ``tests/fakes``, with a realistic
spread of the values it maps to attributes. A reinstall is seen either more recently than the original or long
ago, in the vendor's own last-seen field. ``change`` is what the "changed" run does to an agent: it flips
values the vendor maps to attributes.

Rate limits: the fakes of CrowdStrike (6000 a minute), Intune (2000 per 20 s) and Kandji (50 a second) enforce
the vendor's documented limit; the other fakes have none (their vendors document none; Huntress's fake runs
without its 60 a minute because the bench relaxes Huntress's client limiter, see ``sync.bench_specs``). Every
client keeps its production self rate limit except Huntress's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from tests.fakes.vendor_crowdstrike import CROWDSTRIKE_CLIENT_ID, CROWDSTRIKE_SECRET, FakeCrowdStrike, falcon_host
from tests.fakes.vendor_fleet import DISK_POLICY, FLEET_TOKEN, SCREEN_LOCK_POLICY, FakeFleet, fleet_host, fleet_policy
from tests.fakes.vendor_intune import INTUNE_CLIENT_ID, INTUNE_SECRET, INTUNE_TENANT, FakeIntune, intune_device
from tests.fakes.vendor_jamfpro import JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, FakeJamfPro, jamf_computer
from tests.fakes.vendor_jumpcloud import JUMPCLOUD_KEY, FakeJumpCloud, jumpcloud_interfaces, jumpcloud_system
from tests.fakes.vendor_kandji import KANDJI_TOKEN, FakeKandji, kandji_device
from tests.fakes.vendor_kolide import KOLIDE_KEY, FakeKolide, kolide_device
from tests.fakes.vendor_simplemdm import SIMPLEMDM_KEY, FakeSimpleMDM, simplemdm_device
from tests.fakes.vendors import (
    HUNTRESS_KEY,
    HUNTRESS_SECRET,
    SENTINELONE_TOKEN,
    FakeHuntress,
    FakeSentinelOne,
    huntress_agent,
    sentinelone_agent,
)

Json = dict[str, Any]
Make = Callable[[int, str | None, bool, random.Random], Json]

RECENT = "2026-11-21T10:59:59"
LONG_AGO = "2025-01-01T00:00:00"


def _seen(rng: random.Random, suffix: str = "Z") -> str:
    """A reinstall's last-seen time: more recent than any original's, or long ago."""
    return rng.choice([RECENT, LONG_AGO]) + suffix


@dataclass(frozen=True)
class VendorBench:
    """How the bench drives one vendor: its records, fake, settings, and what the "changed" run does."""

    id: str
    make: Make
    change: Callable[[Json], Json]
    open_fake: Callable[[list[Json]], AbstractContextManager[Any]]
    serve: Callable[[Any, list[Json]], None]
    values: Callable[[Any], dict[str, str]]
    limits: str
    """The rate limits of this run: the fake's and the client's."""


# -- Huntress and SentinelOne ------------------------------------------------------------------------------------


def make_huntress(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    mac = rng.random() < 0.15  # no Microsoft Defender on macOS: its statuses are null and left out
    overrides: Json = {
        "defender_status": None
        if mac
        else rng.choices(["Protected", "Unhealthy", "Unmanaged", "Incompatible"], [85, 7, 5, 3])[0],
        "defender_policy_status": None
        if mac
        else rng.choices(["Compliant", "Non Compliant", "Pending", "Gpo Conflict", "Unknown"], [88, 6, 3, 2, 1])[0],
        "firewall_status": rng.choices(
            ["Enabled", "Disabled", "Isolated", "Pending Isolation", "Pending Release"], [93, 5, 1, 0.5, 0.5]
        )[0],
    }
    if mac:
        overrides.update(platform="darwin", os="macOS 14.6", win_build_number=None, os_build_version="23G80")
    if reinstall:  # a reinstall: seen either more recently than the original or long ago
        overrides["last_callback_at"] = _seen(rng)
    return huntress_agent(i, serial, **overrides)


def change_huntress(agent: Json) -> Json:
    firewall = "Disabled" if agent["firewall_status"] == "Enabled" else "Enabled"
    agent = {**agent, "firewall_status": firewall}
    if agent["defender_status"] is not None:  # Windows: Defender turned unhealthy too
        agent["defender_status"] = "Unhealthy" if agent["defender_status"] == "Protected" else "Protected"
    return agent


def make_sentinelone(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    threats = rng.choices([0, 1, 2, 3], [97, 1.5, 1, 0.5])[0]
    overrides: Json = {
        "activeThreats": threats,
        "infected": threats > 0,
        "agentVersion": rng.choices(["23.4.2.14", "23.3.3.264", "22.3.4.612", "24.1.2.6"], [60, 25, 10, 5])[0],
        "operationalState": rng.choices(
            ["na", "partially_disabled", "auto_fully_disabled", "disabled_error"], [97, 1.5, 1, 0.5]
        )[0],
        "encryptedApplications": rng.random() < 0.8,
        "firewallEnabled": rng.random() < 0.9,
        "isActive": rng.random() < 0.95,
        "isDecommissioned": rng.random() < 0.01,  # the client asks for isDecommissioned=false: these are not served
    }
    if reinstall:
        overrides["lastActiveDate"] = _seen(rng, ".000000Z")
    return sentinelone_agent(i, serial, **overrides)


def change_sentinelone(agent: Json) -> Json:
    return {**agent, "activeThreats": agent["activeThreats"] + 1, "infected": True, "agentVersion": "24.2.1.9"}


# -- CrowdStrike: a record is {"host": ..., "overall": ZTA score}; the fake serves both ---------------------------


def make_crowdstrike(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    platform = rng.choices(["Windows", "Mac", "Linux"], [70, 25, 5])[0]
    overrides: Json = {"platform_name": platform, "status": rng.choices(["normal", "contained"], [99.5, 0.5])[0]}
    if reinstall:
        overrides["last_seen"] = _seen(rng)
    score = rng.choices([rng.randint(80, 100), rng.randint(50, 79), rng.randint(1, 49)], [80, 15, 5])[0]
    return {"host": falcon_host(i, serial, **overrides), "overall": score}


def change_crowdstrike(record: Json) -> Json:
    return {**record, "overall": record["overall"] - 20 if record["overall"] > 20 else record["overall"] + 20}


def serve_crowdstrike(fake: FakeCrowdStrike, records: list[Json]) -> None:
    fake.set_hosts([r["host"] for r in records], {r["host"]["device_id"]: r["overall"] for r in records})


def open_crowdstrike(records: list[Json]) -> FakeCrowdStrike:
    fake = FakeCrowdStrike(rate_limit=6000, rate_window=60.0)
    serve_crowdstrike(fake, records)
    return fake


# -- Intune, Jamf Pro, Kandji, Kolide, Fleet, JumpCloud, SimpleMDM ----------------------------------------------


def make_intune(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    mac = rng.random() < 0.2
    overrides: Json = {
        "complianceState": rng.choices(
            ["compliant", "noncompliant", "inGracePeriod", "unknown", "error"], [88, 7, 3, 1.5, 0.5]
        )[0],
        "isEncrypted": rng.random() < 0.92,
        "azureADRegistered": rng.random() < 0.97,
        "managedDeviceOwnerType": rng.choices(["company", "personal"], [90, 10])[0],
        "isSupervised": mac and rng.random() < 0.8,
    }
    if mac:
        overrides.update(operatingSystem="macOS", osVersion="15.6.1")
    if reinstall:
        overrides["lastSyncDateTime"] = _seen(rng)
    return intune_device(i, serial, **overrides)


def change_intune(device: Json) -> Json:
    state = "noncompliant" if device["complianceState"] == "compliant" else "compliant"
    return {**device, "complianceState": state, "isEncrypted": not device["isEncrypted"]}


def make_jamfpro(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    general: Json = {"supervised": rng.random() < 0.95}
    if reinstall:
        general["lastContactTime"] = _seen(rng, ".000Z")
    return jamf_computer(
        i,
        serial,
        general=general,
        security={
            "firewallEnabled": rng.random() < 0.9,
            "sipStatus": rng.choices(["ENABLED", "DISABLED", "NOT_COLLECTED"], [97, 2, 1])[0],
        },
        operating_system={
            "fileVault2Status": rng.choices(
                ["ALL_ENCRYPTED", "NOT_ENCRYPTED", "BOOT_ENCRYPTED", "SOME_ENCRYPTED"], [90, 6, 3, 1]
            )[0]
        },
    )


def change_jamfpro(record: Json) -> Json:
    security = {**record["security"], "firewallEnabled": not record["security"]["firewallEnabled"]}
    vault = "NOT_ENCRYPTED" if record["operatingSystem"]["fileVault2Status"] == "ALL_ENCRYPTED" else "ALL_ENCRYPTED"
    return {**record, "security": security, "operatingSystem": {**record["operatingSystem"], "fileVault2Status": vault}}


def make_kandji(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    overrides: Json = {"mdm_enabled": rng.random() < 0.98, "agent_installed": rng.random() < 0.95}
    if reinstall:
        overrides["last_checkin"] = _seen(rng, ".000000+00:00")
    return kandji_device(i, serial, **overrides)


def change_kandji(device: Json) -> Json:
    return {**device, "agent_installed": not device["agent_installed"]}


def make_kolide(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    overrides: Json = {
        "auth_state": rng.choices(["Good", "Notified", "Will Block", "Blocked"], [88, 6, 4, 2])[0],
    }
    if reinstall:
        overrides["last_seen_at"] = _seen(rng)
    return kolide_device(i, serial, **overrides)


def change_kolide(device: Json) -> Json:
    return {**device, "auth_state": "Blocked" if device["auth_state"] == "Good" else "Good"}


def make_fleet(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    disk = rng.choices(["pass", "fail", ""], [90, 8, 2])[0]
    overrides: Json = {
        "status": rng.choices(["online", "offline", "mia"], [80, 19, 1])[0],
        "policies": [fleet_policy(DISK_POLICY, disk), fleet_policy(SCREEN_LOCK_POLICY, "pass")],
    }
    if reinstall:
        overrides["seen_time"] = _seen(rng)
    return fleet_host(i, serial, **overrides)


def change_fleet(host: Json) -> Json:
    disk = host["policies"][0]
    response = "fail" if disk["response"] == "pass" else "pass"
    return {**host, "policies": [{**disk, "response": response}, *host["policies"][1:]]}


def make_jumpcloud(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    failed = rng.choices([0, 1, 2], [92, 6, 2])[0]
    overrides: Json = {
        "active": rng.random() < 0.7,
        "fde": {"active": rng.random() < 0.93, "keyPresent": rng.random() < 0.9},
        "agentVersion": rng.choices(["1.178.0", "1.177.2", "1.170.0"], [70, 25, 5])[0],
        "policyStats": {
            "total": 6,
            "success": 6 - failed,
            "failed": failed,
            "pending": 0,
            "duplicate": 0,
            "unsupportedOs": 0,
        },
    }
    if reinstall:
        overrides["lastContact"] = _seen(rng, ".000Z")
    return jumpcloud_system(i, serial, **overrides)


def change_jumpcloud(system: Json) -> Json:
    fde = {**system["fde"], "active": not system["fde"]["active"]}
    return {**system, "fde": fde, "agentVersion": "1.180.1"}


def _jumpcloud_index(system: Json) -> int:
    return int(system["_id"][12:], 16)  # system_id(i) is a fixed prefix and i as 12 hex digits


def serve_jumpcloud(fake: FakeJumpCloud, systems: list[Json]) -> None:
    fake.set_agents(systems)
    fake.set_interfaces([row for s in systems for row in jumpcloud_interfaces(_jumpcloud_index(s))])


def open_jumpcloud(systems: list[Json]) -> FakeJumpCloud:
    fake = FakeJumpCloud()
    serve_jumpcloud(fake, systems)
    return fake


def make_simplemdm(i: int, serial: str | None, reinstall: bool, rng: random.Random) -> Json:
    attributes: Json = {
        "filevault_enabled": rng.random() < 0.93,
        "firewall": {"enabled": rng.random() < 0.85, "block_all_incoming": False, "stealth_mode": True},
        "passcode_compliant": rng.random() < 0.96,
        "is_supervised": rng.random() < 0.9,
    }
    if reinstall:
        attributes["last_seen_at"] = _seen(rng, ".000-00:00")
    return simplemdm_device(i, serial, **attributes)


def change_simplemdm(device: Json) -> Json:
    attributes = device["attributes"]
    changed = {**attributes, "filevault_enabled": not attributes["filevault_enabled"]}
    return {**device, "attributes": changed}


# -- the registry of the bench -------------------------------------------------------------------------------------


def _set_agents(fake: Any, records: list[Json]) -> None:
    fake.set_agents(records)


NO_LIMIT = "fake: no rate limit (the vendor documents none); client: as in production (none)"

VENDORS: dict[str, VendorBench] = {
    v.id: v
    for v in (
        VendorBench(
            "huntress",
            make_huntress,
            change_huntress,
            lambda records: FakeHuntress(records, rate_limit_per_minute=None),
            _set_agents,
            lambda fake: {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake.url},
            "fake: rate limit off; client: limiter RELAXED to 10**6 a minute (production: 60 a minute, which would "
            "make 100 pages take over a minute)",
        ),
        VendorBench(
            "sentinelone",
            make_sentinelone,
            change_sentinelone,
            lambda records: FakeSentinelOne(records),
            _set_agents,
            lambda fake: {"url": fake.url, "api_token": SENTINELONE_TOKEN},
            "fake: no rate limit; client: as in production (no self limit; 429s are backed off)",
        ),
        VendorBench(
            "crowdstrike",
            make_crowdstrike,
            change_crowdstrike,
            open_crowdstrike,
            serve_crowdstrike,
            lambda fake: {
                "client_id": CROWDSTRIKE_CLIENT_ID,
                "client_secret": CROWDSTRIKE_SECRET,
                "base_url": fake.url,
            },
            "fake: 6000 a minute (CrowdStrike's limit); client: as in production (6000 per 60.5 s)",
        ),
        VendorBench(
            "intune",
            make_intune,
            change_intune,
            lambda records: FakeIntune(records, rate_limit=2000, rate_window=20.0),
            lambda fake, records: fake.set_devices(records),
            lambda fake: {
                "tenant_id": INTUNE_TENANT,
                "client_id": INTUNE_CLIENT_ID,
                "client_secret": INTUNE_SECRET,
                "login_url": fake.url,
                "graph_url": fake.url,
            },
            "fake: 2000 per 20 s (Intune's limit); client: as in production (2000 per 20.5 s)",
        ),
        VendorBench(
            "jamfpro",
            make_jamfpro,
            change_jamfpro,
            lambda records: FakeJamfPro(records),
            _set_agents,
            lambda fake: {"url": fake.url, "client_id": JAMF_CLIENT_ID, "client_secret": JAMF_CLIENT_SECRET},
            NO_LIMIT,
        ),
        VendorBench(
            "kandji",
            make_kandji,
            change_kandji,
            lambda records: FakeKandji(records, rate_limit_per_second=50),
            _set_agents,
            lambda fake: {"api_url": fake.url, "api_token": KANDJI_TOKEN},
            "fake: 50 a second (Kandji's limit); client: as in production (50 per 1.05 s)",
        ),
        VendorBench(
            "kolide",
            make_kolide,
            change_kolide,
            lambda records: FakeKolide(records),
            _set_agents,
            lambda fake: {"api_key": KOLIDE_KEY, "base_url": fake.url},
            NO_LIMIT,
        ),
        VendorBench(
            "fleet",
            make_fleet,
            change_fleet,
            lambda records: FakeFleet(records),
            _set_agents,
            lambda fake: {"url": fake.url, "api_token": FLEET_TOKEN},
            NO_LIMIT,
        ),
        VendorBench(
            "jumpcloud",
            make_jumpcloud,
            change_jumpcloud,
            open_jumpcloud,
            serve_jumpcloud,
            lambda fake: {"api_key": JUMPCLOUD_KEY, "base_url": fake.url},
            NO_LIMIT,
        ),
        VendorBench(
            "simplemdm",
            make_simplemdm,
            change_simplemdm,
            lambda records: FakeSimpleMDM(records),
            _set_agents,
            lambda fake: {"api_key": SIMPLEMDM_KEY, "base_url": fake.url},
            NO_LIMIT,
        ),
    )
}
"""Vendor id → how the bench drives it, for every vendor of ``app.vendors.registry``."""
