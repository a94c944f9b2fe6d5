"""Freshness (max_agent_age) and MAC matching end to end: vendor client → SyncRunner → the built-in tailnet."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database, audit
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.devicejson import device_to_api
from app.tailnet.models import Actor, Device
from app.vendors import huntress
from app.vendors.base import Agent, KnownAttribute, Progress, VendorSpec
from app.vendors.integrations import IntegrationError, Integrations, parse_max_agent_age
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendors import HUNTRESS_KEY, HUNTRESS_SECRET, FakeHuntress, huntress_agent

ADMIN = "cli:admin"


class ListedAgents:
    """A vendor client over a fixed list of agents (for MAC matching, which the Huntress client does not read)."""

    agents: list[Agent] = []

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        return list(self.agents)

    def verify(self) -> int:
        return len(self.agents[:1])

    def close(self) -> None:
        return None


MACS_SPEC = VendorSpec(
    id="macvendor",
    label="MAC Vendor",
    namespace="macVendor",
    fields=(),
    attributes=(KnownAttribute("macVendor:score", "number"),),
    build=lambda values: ListedAgents(),
)


@pytest.fixture
def vendors() -> VendorRegistry:
    def build_huntress(values: Any) -> huntress.HuntressClient:
        return huntress.HuntressClient(
            values["api_key"], values["api_secret"], base_url=values["base_url"], sleep=lambda _s: None, page_size=2
        )

    return VendorRegistry((dataclasses.replace(huntress.SPEC, build=build_huntress), MACS_SPEC))


@pytest.fixture
def fake_huntress() -> Iterator[FakeHuntress]:
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        yield fake


@pytest.fixture
def integrations(db: Database, clock: FrozenClock, vendors: VendorRegistry) -> Integrations:
    return Integrations(db, Cipher.from_secret("a test passphrase of some length"), clock=clock, vendors=vendors)


@pytest.fixture
def runner(db: Database, builtin: BuiltinTailnet, integrations: Integrations, clock: FrozenClock) -> SyncRunner:
    return SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)


def add_devices(builtin: BuiltinTailnet, *serials: str) -> list[Device]:
    return [
        builtin.add_device(name=f"host{i}", user=f"u{i}@example.com", serial_numbers=[s], actor=Actor("cli:setup"))
        for i, s in enumerate(serials)
    ]


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def test_max_agent_age_parses_and_refuses_what_would_mark_healthy_agents_stale() -> None:
    assert parse_max_agent_age("7d") == timedelta(days=7)
    assert parse_max_agent_age(" 1d12h ") == timedelta(days=1, hours=12)
    assert parse_max_agent_age("off") is None and parse_max_agent_age("0") is None
    with pytest.raises(IntegrationError, match="shorter than 1h"):
        parse_max_agent_age("15m")
    with pytest.raises(IntegrationError, match=r"invalid duration 'soon'.*or 'off'"):
        parse_max_agent_age("soon")


def test_max_agent_age_is_stored_audited_kept_by_updates_and_not_a_vendor_setting(
    integrations: Integrations, fake_huntress: FakeHuntress, db: Database
) -> None:
    values = {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake_huntress.url}
    integrations.add("huntress", values, actor=ADMIN)
    assert integrations.get("huntress").max_agent_age is None
    changed = integrations.set_max_agent_age("huntress", timedelta(days=7), actor=ADMIN)
    assert changed.max_agent_age == timedelta(days=7) and changed.sync_requested_at is not None
    assert changed.to_json()["max_agent_age"] == "7d"
    assert "_max_agent_age" not in changed.settings
    assert "_max_agent_age" not in integrations.credentials("huntress")  # never handed to the vendor client
    integrations.update("huntress", {"base_url": fake_huntress.url + "/"}, actor=ADMIN)
    assert integrations.get("huntress").max_agent_age == timedelta(days=7)  # a field change keeps it
    with db.session() as s:
        events = audit.query(s, action="Update posture integration")
    assert any(e.new_value == {"max_agent_age": "7d"} and e.old_value == {"max_agent_age": None} for e in events)
    assert integrations.set_max_agent_age("huntress", None, actor=ADMIN).max_agent_age is None


def test_stale_agents_write_only_the_marker_and_fresh_ones_their_posture(
    runner: SyncRunner,
    integrations: Integrations,
    fake_huntress: FakeHuntress,
    builtin: BuiltinTailnet,
    clock: FrozenClock,
) -> None:
    fresh, old, unknown = add_devices(builtin, "SER-0", "SER-1", "SER-2")
    fake_huntress.set_agents(
        [
            huntress_agent(0, "SER-0"),  # seen an hour before the clock
            huntress_agent(1, "SER-1", last_callback_at="2026-11-10T08:00:00Z"),
            huntress_agent(2, "SER-2", last_callback_at="2026-11-20T08:00:00Z"),
        ]
    )
    values = {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake_huntress.url}
    integrations.add("huntress", values, actor=ADMIN)
    first = runner.run("huntress")
    assert first.result == "ok", first.error
    assert all("huntress:firewallStatus" in attrs(builtin, d) for d in (fresh, old, unknown))

    integrations.set_max_agent_age("huntress", timedelta(days=7), actor=ADMIN)
    report = runner.run("huntress")
    assert report.result == "ok", report.error
    assert attrs(builtin, old) == {"huntress:stale": True}  # its posture is gone, the marker says why
    assert "huntress:stale" not in attrs(builtin, fresh) and "huntress:stale" not in attrs(builtin, unknown)
    assert attrs(builtin, fresh)["huntress:firewallStatus"] == "Enabled"
    assert (report.agents_stale, report.stale_matches, report.max_agent_age) == (1, 1, "7d")
    assert report.summary == "3 matches between 3 Tailscale devices with identifiers and 3 Huntress agents"
    status = status_of(integrations.get("huntress"), clock())
    assert status["matching"] == (
        "3 matched by serial number, 0 by MAC address; 1 with an agent not seen within 7d (marked stale)"
    )
    assert (status["stale_matches"], status["max_agent_age"]) == (1, "7d")

    again = runner.run("huntress")
    assert (again.sets, again.deletes, again.write_calls) == (0, 0, 0)

    clock.advance(days=2)  # SER-2's agent, last seen 3 days 4 hours ago now, is still fresh: nothing changes
    assert runner.run("huntress").stale_matches == 1
    clock.advance(days=5)  # a week later no agent has checked in: all three are stale
    later = runner.run("huntress")
    assert later.stale_matches == 3
    assert attrs(builtin, unknown) == {"huntress:stale": True}

    integrations.set_max_agent_age("huntress", None, actor=ADMIN)  # turned off: the markers go, posture returns
    off = runner.run("huntress")
    assert off.result == "ok" and off.stale_matches == 0
    assert all("huntress:stale" not in attrs(builtin, d) for d in (fresh, old, unknown))
    assert attrs(builtin, old)["huntress:firewallStatus"] == "Enabled"


def test_disconnect_removes_the_stale_marker_too(
    runner: SyncRunner, integrations: Integrations, fake_huntress: FakeHuntress, builtin: BuiltinTailnet
) -> None:
    (device,) = add_devices(builtin, "SER-1")
    fake_huntress.set_agents([huntress_agent(1, "SER-1", last_callback_at="2026-10-01T00:00:00Z")])
    values = {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake_huntress.url}
    integrations.add("huntress", values, actor=ADMIN)
    integrations.set_max_agent_age("huntress", timedelta(days=1), actor=ADMIN)
    runner.run("huntress")
    assert attrs(builtin, device) == {"huntress:stale": True}
    assert runner.disconnect("huntress", actor=ADMIN) == 1
    assert attrs(builtin, device) == {}


def test_devices_imported_with_macs_match_agents_by_mac(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet
) -> None:
    identity = {"serialNumbers": [], "ifaceHardwareAddrs": ["3c:22:fb:12:34:56", "02:42:ac:11:00:02"]}
    builtin.import_devices(
        [
            {"id": "101", "nodeId": "nMAC1CNTRL", "name": "mac1.example.ts.net", "postureIdentity": identity},
            {"id": "102", "nodeId": "nMAC2CNTRL", "name": "mac2.example.ts.net", "postureIdentity": {"disabled": True}},
        ],
        actor=Actor("cli:setup"),
    )
    exported = device_to_api(builtin.get_device("101"), fields_all=True)
    assert exported["postureIdentity"]["ifaceHardwareAddrs"] == identity["ifaceHardwareAddrs"]  # kept verbatim
    ListedAgents.agents = [
        Agent("macvendor", "a1", "mac1", None, {"macVendor:score": 77}, mac_addresses=("3C-22-FB-12-34-56",)),
        Agent("macvendor", "a2", "other", None, {"macVendor:score": 1}, mac_addresses=("02-42-AC-11-00-02",)),
    ]
    integrations.add("macvendor", {}, actor=ADMIN)
    report = runner.run("macvendor")
    assert report.result == "ok", report.error
    assert (report.matches, report.matches_by_serial, report.matches_by_mac) == (1, 0, 1)
    assert (report.devices_with_identity, report.devices_without_identity) == (1, 1)
    assert builtin.get_attributes("101").attributes == {"macVendor:score": 77}
    assert builtin.get_attributes("102").attributes == {}
