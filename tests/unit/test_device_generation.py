"""The device change counter: the built-in store bumps it with every device add/import in the same transaction,
the Slack device index refetches by it (and by a slow clock as a safety net), and the index's cheap listing
gives the same ``Device`` values as ``list_devices``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from app.core.clock import FrozenClock
from app.db import Database
from app.slack.device_index import DeviceGeneration, DeviceIndex, IndexListing
from app.tailnet import builtin as builtin_module
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.builtin_sync import SyncDevice
from app.tailnet.devicejson import device_to_api
from app.tailnet.models import Actor, Device

ADMIN = Actor("cli:test")


@pytest.fixture
def builtin(db: Database, clock: FrozenClock) -> BuiltinTailnet:
    return BuiltinTailnet(db, clock=clock)


class Counting:
    """The built-in store, counting the listings the index makes."""

    def __init__(self, inner: BuiltinTailnet) -> None:
        self.inner = inner
        self.listings = 0
        self.generation_error: Exception | None = None

    def list_devices(self) -> list[Device]:
        raise AssertionError("the index lists with index_devices")

    def index_devices(self) -> Iterator[Device]:
        self.listings += 1
        return self.inner.index_devices()

    def device_generation(self) -> int:
        if self.generation_error is not None:
            raise self.generation_error
        return self.inner.device_generation()


def add(builtin: BuiltinTailnet, name: str, **kw: object) -> Device:
    return builtin.add_device(name=name, user="alice@example.com", actor=ADMIN, **kw)  # type: ignore[arg-type]


def test_every_device_change_moves_the_counter_and_attribute_writes_do_not(builtin: BuiltinTailnet) -> None:
    assert isinstance(builtin, DeviceGeneration) and isinstance(builtin, IndexListing)
    start = builtin.device_generation()
    laptop = add(builtin, "laptop.tail1.ts.net")
    assert builtin.device_generation() == start + 1
    builtin.import_devices([{**device_to_api(laptop, fields_all=True), "os": "linux"}], actor=ADMIN)
    assert builtin.device_generation() == start + 2
    builtin.set_attribute(laptop.id, "custom:x", "y", actor=ADMIN)
    assert builtin.device_generation() == start + 2


def test_a_failed_import_leaves_the_counter_where_it_was(builtin: BuiltinTailnet) -> None:
    start = builtin.device_generation()
    with pytest.raises(Exception):  # noqa: B017 - whatever the parser raises: the transaction rolls back
        builtin.import_devices([{"id": "1", "nodeId": "n1", "name": "ok.tail1.ts.net"}, {"name": 7}], actor=ADMIN)
    assert builtin.device_generation() == start


def test_the_index_listing_gives_the_same_devices_as_list_devices(builtin: BuiltinTailnet) -> None:
    add(builtin, "laptop.tail1.ts.net", tags=["tag:a", "tag:b"], addresses=["100.64.0.1"], serial_numbers=["S1"])
    add(builtin, "db.tail1.ts.net", tags=["tag:a", "tag:b"], os="linux")
    builtin.import_devices(
        [{"id": "9", "nodeId": "n9CNTRL", "name": "x.tail1.ts.net", "osVersion": "14.1", "tags": ["tag:a"]}],
        actor=ADMIN,
    )
    listed, indexed = builtin.list_devices(), list(builtin.index_devices())
    assert indexed == listed  # Device equality leaves out raw, which the index never reads
    assert [d.tags for d in indexed] == [d.tags for d in listed] and all(d.raw == {} for d in indexed)


def test_the_index_refetches_when_the_counter_moves_and_only_then(builtin: BuiltinTailnet, clock: FrozenClock) -> None:
    add(builtin, "laptop.tail1.ts.net")
    tailnet = Counting(builtin)
    index = DeviceIndex(tailnet, max_age=timedelta(seconds=60), counted_max_age=timedelta(minutes=15), clock=clock)
    assert index.refresh_if_stale() and tailnet.listings == 1
    clock.advance(minutes=5)  # past the clock refresh of a tailnet without a counter
    assert not index.refresh_if_stale() and tailnet.listings == 1
    add(builtin, "phone.tail1.ts.net")
    assert index.refresh_if_stale() and tailnet.listings == 2
    assert [d.short_name for d in index.search("").devices] == ["laptop", "phone"]
    assert not index.refresh_if_stale()
    clock.advance(minutes=15)  # the safety net
    assert index.refresh_if_stale() and tailnet.listings == 3


def test_an_unreadable_counter_means_a_refresh_attempt(builtin: BuiltinTailnet, clock: FrozenClock) -> None:
    tailnet = Counting(builtin)
    index = DeviceIndex(tailnet, clock=clock)
    assert index.refresh_if_stale()
    tailnet.generation_error = RuntimeError("database away")
    assert index.refresh_if_stale()  # attempted; it failed (and was logged): the old snapshot is kept
    assert index.last_error is not None and tailnet.listings == 1


class ClockOnly:
    """A tailnet without a counter (the Tailscale adapter)."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.calls = 0

    def list_devices(self) -> list[Device]:
        self.calls += 1
        return self.devices


def test_a_tailnet_without_a_counter_keeps_the_clock_refresh(clock: FrozenClock) -> None:
    tailnet = ClockOnly([Device(id="1", node_id="n1", name="a.ts.net", hostname="a")])
    index = DeviceIndex(tailnet, max_age=timedelta(seconds=60), clock=clock)
    assert index.refresh_if_stale() and not index.refresh_if_stale()
    clock.advance(seconds=60)
    assert index.refresh_if_stale() and tailnet.calls == 2


def test_the_sync_listing_is_kept_until_the_devices_change(
    builtin: BuiltinTailnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every vendor's sync lists the devices: the narrow listing is read again only when the generation moved."""
    listings: list[int] = []
    real = builtin_module.sync_devices

    def counting(db: Database) -> list[SyncDevice]:
        listings.append(1)
        return real(db)

    monkeypatch.setattr(builtin_module, "sync_devices", counting)
    laptop = add(builtin, "laptop.tail1.ts.net", serial_numbers=["C02X"])
    first = builtin.sync_devices()
    assert [(d.id, d.serial_numbers) for d in first] == [(laptop.id, ("C02X",))]
    first.clear()  # a caller's copy: the kept listing is not changed through it
    assert [d.id for d in builtin.sync_devices()] == [laptop.id]
    builtin.set_attribute(laptop.id, "custom:x", "y", actor=ADMIN)
    assert [d.id for d in builtin.sync_devices()] == [laptop.id]
    assert len(listings) == 1
    builtin.import_devices(
        [{**device_to_api(laptop, fields_all=True), "postureIdentity": {"serialNumbers": ["C02Y"]}}], actor=ADMIN
    )
    assert [d.serial_numbers for d in builtin.sync_devices()] == [("C02Y",)]
    desk = add(builtin, "desk.tail1.ts.net")
    assert {d.id for d in builtin.sync_devices()} == {laptop.id, desk.id}
    builtin.remove_device(laptop.id, actor=ADMIN)
    assert [d.id for d in builtin.sync_devices()] == [desk.id]
    assert len(listings) == 4
    other = BuiltinTailnet(builtin.db)  # another process's store: its change is seen through the database
    other.add_device(name="third.tail1.ts.net", user="bob@example.com", actor=ADMIN)
    assert len(builtin.sync_devices()) == 2
    assert len(listings) == 5
