"""The built-in store's current values as the EDR sync reads them: one joined text per device (``StoredValues``).

``holds`` must say True only for exactly the stored keys and values, with their types, whatever order the values
were written in; a device that differs is decoded to the same values the rows hold. Runs on PostgreSQL too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.builtin_sync import StoredValues, current_values
from app.tailnet.models import Actor, AttributeWrite, Device
from app.vendors.base import Agent
from app.vendors.mapping import NamespaceMode
from app.vendors.plan import owned_keys, plan_sync
from app.vendors.registry import vendor

SYNC = Actor.system("sync:huntress", "huntress")
KEYS = {"huntress:zeta", "huntress:alpha", "huntress:count", "huntress:text"}


@pytest.fixture
def devices(builtin: BuiltinTailnet, actor: Actor) -> list[Device]:
    return [
        builtin.add_device(name=f"d{i}.tail1.ts.net", user="a@example.com", serial_numbers=[f"S{i}"], actor=actor)
        for i in range(3)
    ]


def values(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> StoredValues:
    return current_values(db, KEYS, clock())


def test_holds_exactly_what_was_written_whatever_the_order_of_writes(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device]
) -> None:
    a, b, _ = devices
    # keys registered in one order by device a, then written to device b one by one in the reverse order: b's rows
    # are stored in an order unlike their key ids', which the joined text must not follow
    written: dict[str, Any] = {
        "huntress:zeta": True,
        "huntress:alpha": "Enabled",
        "huntress:count": 3,
        "huntress:text": 'a=b,"c" é',
    }
    builtin.set_many({a.id: {k: AttributeWrite(v) for k, v in written.items()}}, actor=SYNC)
    for key in reversed(list(written)):
        builtin.set_many({b.id: {key: AttributeWrite(written[key])}}, actor=SYNC)
    stored = values(builtin, db, clock)
    for device in (a, b):
        assert stored.holds(device.id, written)
        assert stored.holds(device.id, dict(reversed(written.items())))
        assert stored[device.id] == written
    assert dict(stored) == {a.id: written, b.id: written}


@pytest.mark.parametrize(
    "wanted",
    [
        {"huntress:zeta": False, "huntress:count": 3},  # another value
        {"huntress:zeta": 1, "huntress:count": 3},  # 1 == True, but not the stored boolean
        {"huntress:zeta": True, "huntress:count": 3.0},  # 3.0 == 3, but not the stored integer
        {"huntress:zeta": True},  # a key fewer
        {"huntress:zeta": True, "huntress:count": 3, "huntress:alpha": "On"},  # a key more (never stored)
        {"huntress:zeta": True, "huntress:count": 3, "huntress:elsewhere": "x"},  # a key this device lacks
        {},
    ],
)
def test_holds_says_no_to_any_difference(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device], wanted: dict[str, Any]
) -> None:
    a, b, _ = devices
    builtin.set_many(
        {
            a.id: {"huntress:zeta": AttributeWrite(True), "huntress:count": AttributeWrite(3)},
            b.id: {"huntress:elsewhere": AttributeWrite("x")},
        },
        actor=SYNC,
    )
    stored = current_values(db, KEYS | {"huntress:elsewhere"}, clock())
    assert not stored.holds(a.id, wanted)
    assert stored[a.id] == {"huntress:zeta": True, "huntress:count": 3}


def test_a_device_without_values_holds_nothing(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device]
) -> None:
    a, b, _ = devices
    builtin.set_many({a.id: {"huntress:zeta": AttributeWrite(True)}}, actor=SYNC)
    stored = values(builtin, db, clock)
    assert stored.holds(b.id, {})
    assert not stored.holds(b.id, {"huntress:zeta": True})
    assert b.id not in stored and stored.get(b.id) is None
    assert len(stored) == 1


def test_expired_values_and_other_keys_are_left_out(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device], actor: Actor
) -> None:
    a, _, _ = devices
    builtin.set_many({a.id: {"huntress:zeta": AttributeWrite(True)}}, actor=SYNC)
    builtin.set_attribute(a.id, "huntress:alpha", "On", actor=SYNC, expiry=clock() + timedelta(minutes=1))
    builtin.set_attribute(a.id, "custom:other", "x", actor=actor)
    assert values(builtin, db, clock).holds(a.id, {"huntress:zeta": True, "huntress:alpha": "On"})
    clock.advance(seconds=61)
    stored = values(builtin, db, clock)
    assert stored.holds(a.id, {"huntress:zeta": True})
    assert stored[a.id] == {"huntress:zeta": True}


def test_family_prefixes_are_read_with_the_keys(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device]
) -> None:
    a, _, _ = devices
    fleet = Actor.system("sync:fleet", "fleet", "fleetPolicy")
    builtin.set_many(
        {a.id: {"fleetPolicy:disk": AttributeWrite("pass"), "fleet:enrolled": AttributeWrite(True)}}, actor=fleet
    )
    stored = current_values(db, {"fleet:enrolled"}, clock(), prefixes=("fleetPolicy:",))
    assert stored.holds(a.id, {"fleet:enrolled": True, "fleetPolicy:disk": "pass"})
    assert not stored.holds(a.id, {"fleet:enrolled": True})


def test_a_resync_decodes_only_the_devices_that_changed(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = vendor("huntress")
    keys = owned_keys(spec, NamespaceMode.VENDOR)
    a, b, c = devices
    builtin.set_many(
        {
            a.id: {"huntress:firewallStatus": AttributeWrite("Enabled")},
            b.id: {"huntress:firewallStatus": AttributeWrite("Enabled")},
        },
        actor=SYNC,
    )
    stored = current_values(db, keys.keys, clock())
    decoded: list[str] = []
    real = StoredValues.__getitem__

    def spy(self: StoredValues, device_id: str) -> dict[str, Any]:
        decoded.append(device_id)
        return real(self, device_id)

    monkeypatch.setattr(StoredValues, "__getitem__", spy)
    wanted = {"firewallStatus": "Enabled"}
    agents = [
        spec_agent("1", "S0", wanted),
        spec_agent("2", "S1", {"firewallStatus": "Disabled"}),
        spec_agent("3", "S2", wanted),
    ]
    plan = plan_sync(spec, builtin.sync_devices(), agents, stored, NamespaceMode.VENDOR)
    assert decoded == [b.id]  # a holds what it should; c holds nothing yet, so there is nothing to decode
    assert plan.changes == {
        b.id: {"huntress:firewallStatus": AttributeWrite("Disabled")},
        c.id: {"huntress:firewallStatus": AttributeWrite("Enabled")},
    }


def spec_agent(agent_id: str, serial: str, attributes: dict[str, Any]) -> Agent:
    return Agent("huntress", agent_id, f"host-{agent_id}", serial, {f"huntress:{k}": v for k, v in attributes.items()})
