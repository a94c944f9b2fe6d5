"""The built-in tailnet: devices and posture attributes in accessbot's own database.

It enforces every attribute rule (``rules``), never returns an expired attribute, and audits each write,
delete and expiry in the same transaction as the change. This module is the ``Tailnet`` face of the store;
the work lives beside it: ``builtin_devices`` (device rows), ``builtin_writes`` (attribute writes),
``builtin_expiry`` (expiry purge) and ``builtin_transactions`` (per-device locking and retries).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables import AttributeRow, DeviceRow
from app.tailnet import rules
from app.tailnet.builtin_devices import (
    DEVICE_COLUMNS,
    add_row,
    bump_generation,
    device_generation,
    device_row,
    devices_named,
    index_devices,
    named_like,
    new_device,
    new_device_ids,
    to_device,
    upsert_devices,
)
from app.tailnet.builtin_expiry import EXPIRY_ACTOR, collect_key, purge
from app.tailnet.builtin_sync import StoredValues, SyncDevice, current_values, sync_devices
from app.tailnet.builtin_transactions import lock_devices, run_write
from app.tailnet.builtin_writes import apply_batch, check_changes, delete_one
from app.tailnet.device_input import check_import_item, duplicate_names
from app.tailnet.devicejson import device_from_api
from app.tailnet.errors import InvalidRequest
from app.tailnet.models import (
    Actor,
    AttributeChanges,
    AttributeSet,
    AttributeValue,
    AttributeWrite,
    Device,
)
from app.tailnet.node_attributes import node_attributes

__all__ = ["EXPIRY_ACTOR", "BuiltinTailnet", "new_device_ids"]


class BuiltinTailnet:
    """The ``Tailnet`` backed by accessbot's database."""

    max_batch_devices = 1000
    """Devices per ``set_many`` call a bulk writer (the EDR sync) should use."""

    def __init__(self, db: Database, *, clock: Clock = utcnow, name: str = "example.com") -> None:
        self.db = db
        self.clock = clock
        self.name = name
        self._sync_listing: tuple[int, tuple[SyncDevice, ...]] | None = None
        self._sync_listing_lock = threading.Lock()

    # -- devices -------------------------------------------------------------------------------------

    def list_devices(self) -> list[Device]:
        """Every device, ordered by name."""
        with self.db.session() as session:
            # plain rows, not ORM objects: a sync lists every device, and object construction dominated
            rows = session.execute(select(*DEVICE_COLUMNS).order_by(DeviceRow.name, DeviceRow.id))
            return [to_device(row) for row in rows]

    def device_generation(self) -> int:
        """A counter bumped with every device add, import or update (the ``DeviceGeneration`` capability the
        Slack device index refreshes by)."""
        with self.db.session() as session:
            return device_generation(session)

    def index_devices(self) -> Iterator[Device]:
        """Every device, ordered by name, without ``raw``: what the Slack device index searches, read cheaply and
        yielded as read (the session stays open until the last one)."""
        with self.db.session() as session:
            yield from index_devices(session)

    def sync_devices(self) -> list[SyncDevice]:
        """Every device as the EDR sync matches it (id, serial numbers, identity flag, MACs): a narrow listing,
        kept until the device generation moves (every vendor's sync, every 15 minutes, lists the same devices).

        The generation is read before the listing: a change committed in between only makes the next call list
        again, never keeps a listing older than its generation.
        """
        with self._sync_listing_lock:
            generation = self.device_generation()
            if self._sync_listing is None or self._sync_listing[0] != generation:
                self._sync_listing = (generation, tuple(sync_devices(self.db)))
            return list(self._sync_listing[1])

    def get_device(self, device_id: str) -> Device:
        """One device by id or nodeId."""
        with self.db.session() as session:
            return to_device(device_row(session, device_id))

    def add_device(
        self,
        *,
        name: str,
        user: str,
        hostname: str | None = None,
        os: str = "",
        tags: Iterable[str] = (),
        serial_numbers: Iterable[str] = (),
        addresses: Iterable[str] = (),
        client_version: str = "",
        os_version: str = "",
        actor: Actor,
    ) -> Device:
        """Create a device with generated ids and keys and Tailscale's defaults (``new_device``); its name must be
        unique in the tailnet (``InvalidRequest`` otherwise). ``os_version`` feeds ``node:osVersion``."""
        device = new_device(
            name=name,
            user=user,
            hostname=hostname,
            os=os,
            tags=tags,
            serial_numbers=serial_numbers,
            addresses=addresses,
            client_version=client_version,
            os_version=os_version,
            tailnet_name=self.name,
            now=self.clock(),
        )
        now = self.clock()
        with self.db.session() as session:
            if devices_named(session, device.name):
                raise InvalidRequest(
                    f"a device named {device.name!r} already exists; device names are unique in a tailnet "
                    "(choose another --name, or `accessbot devices remove` the old one)"
                )
            add_row(session, device, now)
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.ADD_DEVICE,
                target=f"device/{device.id}",
                new={"name": device.name, "nodeId": device.node_id, "user": device.user},
            )
        return device

    def import_devices(self, devices: list[dict[str, Any]], *, actor: Actor) -> tuple[int, int]:
        """Create or update devices from the API's device JSON; returns (created, updated).

        Every device is checked first (``InvalidRequest`` names its index and field) and names must stay unique
        in the tailnet (``InvalidRequest`` lists the names held twice); then all are written, or none."""
        parsed: list[Device] = []
        for index, item in enumerate(devices):
            try:
                check_import_item(item)
                device = device_from_api(item)
            except InvalidRequest as exc:
                raise InvalidRequest(f"device at index {index}: {exc.message}") from None
            if "." not in device.name:  # a bare name becomes the MagicDNS name; an FQDN is kept as given
                device = replace(device, name=f"{device.name}.{self.name}")
            parsed.append(device)
        now = self.clock()
        with self.db.session() as session:
            created, updated = upsert_devices(session, parsed, now)
            session.flush()
            duplicates = duplicate_names(named_like(session, {device.name for device in parsed}))
            if duplicates:
                raise InvalidRequest(
                    f"device names must be unique in a tailnet; this import would leave several devices named "
                    f"{', '.join(duplicates)}; nothing was imported"
                )
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.IMPORT_DEVICES,
                target="devices",
                details={"created": created, "updated": updated},
            )
        return created, updated

    def remove_device(self, device_id: str, *, actor: Actor) -> Device:
        """Remove a device (by id or nodeId) with its attributes, in one transaction: each attribute's removal and
        the device's are audited, and the device generation moves (so device lists refresh)."""

        def work(session: Session, now: datetime) -> Device:
            row = device_row(session, device_id)
            lock_devices(self.db, session, [row.id], self.max_batch_devices)
            device = to_device(row)
            attrs = list(session.scalars(select(AttributeRow).where(AttributeRow.device_id == row.id)))
            for attr in sorted(attrs, key=lambda a: a.key.key):
                audit.record(
                    session,
                    at=now,
                    actor=actor.id,
                    action=AuditAction.UPDATE_NODE_ATTRIBUTE,
                    target=audit.attribute_target(row.id, attr.key.key),
                    old=attr.value,
                    new=None,
                    comment="device removed",
                    details={"device_id": row.id, "key": attr.key.key, "change": "delete"},
                )
            key_ids = {attr.key_id for attr in attrs}
            session.execute(delete(AttributeRow).where(AttributeRow.device_id == row.id))
            session.execute(delete(DeviceRow).where(DeviceRow.id == row.id))
            session.expunge(row)
            for key_id in sorted(key_ids):
                collect_key(session, key_id)
            bump_generation(session)
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.REMOVE_DEVICE,
                target=f"device/{row.id}",
                old={"name": device.name, "nodeId": device.node_id, "user": device.user},
                details={"attributes": len(attrs)},
            )
            return device

        return run_write(self.db, self.clock, work)

    def device_ids_named(self, name: str) -> list[str]:
        """Ids of the devices called ``name`` (case-insensitively), for look-ups by name."""
        with self.db.session() as session:
            return devices_named(session, name)

    # -- attributes ----------------------------------------------------------------------------------

    def get_attributes(self, device_id: str) -> AttributeSet:
        """Live attributes of a device, with the read-only ``node:`` ones; an expired attribute is never returned."""
        now = self.clock()
        with self.db.session() as session:
            row = device_row(session, device_id)
            stmt = (
                select(AttributeRow)
                .where(AttributeRow.device_id == row.id)
                .where(or_(AttributeRow.expires_at.is_(None), AttributeRow.expires_at > now))
            )
            attributes: dict[str, AttributeValue] = node_attributes(to_device(row))
            expiries: dict[str, datetime] = {}
            for attr in session.scalars(stmt):
                attributes[attr.key.key] = attr.value
                if attr.expires_at is not None:
                    expiries[attr.key.key] = attr.expires_at
            return AttributeSet(dict(sorted(attributes.items())), dict(sorted(expiries.items())))

    def set_attribute(
        self,
        device_id: str,
        key: str,
        value: AttributeValue,
        *,
        actor: Actor,
        expiry: datetime | None = None,
        comment: str | None = None,
    ) -> None:
        """Set one attribute after checking every rule."""
        self.set_many({device_id: {key: AttributeWrite(value, expiry)}}, actor=actor, comment=comment)

    def delete_attribute(self, device_id: str, key: str, *, actor: Actor, comment: str | None = None) -> None:
        """Delete one live attribute; ``NotFound`` if it is not set."""
        rules.validate_key(key, actor.namespaces)
        comment = rules.validate_comment(comment)

        def work(session: Session, now: datetime) -> None:
            delete_one(
                self.db,
                session,
                now,
                device_id,
                key,
                actor=actor.id,
                comment=comment,
                lock_chunk=self.max_batch_devices,
            )

        run_write(self.db, self.clock, work)

    def set_many(self, changes: AttributeChanges, *, actor: Actor, comment: str | None = None) -> None:
        """Apply sets and deletes across devices atomically: all of them, or none if any rule fails."""
        comment = rules.validate_comment(comment)
        checked = check_changes(changes, actor, self.clock())

        def work(session: Session, now: datetime) -> None:
            apply_batch(self.db, session, checked, now, actor.id, comment, lock_chunk=self.max_batch_devices)

        run_write(self.db, self.clock, work)

    def attributes_with_keys(self, keys: Collection[str], *, prefixes: Collection[str] = ()) -> StoredValues:
        """Live values of the given keys, and of keys starting with ``prefixes``, on every device: device id →
        key → value (read as one text per device; ``StoredValues.holds`` compares a device's without decoding)."""
        return current_values(self.db, keys, self.clock(), prefixes)

    def adopt_write(
        self,
        device_id: str,
        key: str,
        write: AttributeWrite,
        *,
        actor: Actor,
        comment: str | None,
        since: datetime,
    ) -> bool:
        """Nothing to adopt: the built-in store audits each write in the write's own transaction."""
        return False

    def purge_expired(self) -> int:
        """Delete every expired attribute, auditing each at its expiry time; return how many."""
        return run_write(self.db, self.clock, purge)
