"""The built-in tailnet: devices and posture attributes in accessbot's own database.

It enforces every attribute rule (``rules``), never returns an expired attribute, and audits each write,
delete and expiry in the same transaction as the change. This module is the ``Tailnet`` face of the store;
the work lives beside it: ``builtin_devices`` (device rows), ``builtin_writes`` (attribute writes),
``builtin_expiry`` (expiry purge) and ``builtin_transactions`` (per-device locking and retries).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables import AttributeRow, DeviceRow
from app.tailnet import rules
from app.tailnet.builtin_devices import (
    DEVICE_COLUMNS,
    add_row,
    device_generation,
    device_row,
    index_devices,
    new_device,
    new_device_ids,
    to_device,
    upsert_devices,
)
from app.tailnet.builtin_expiry import EXPIRY_ACTOR, purge
from app.tailnet.builtin_sync import SyncDevice, current_values, sync_devices
from app.tailnet.builtin_transactions import run_write
from app.tailnet.builtin_writes import apply_batch, check_changes, delete_one
from app.tailnet.devicejson import device_from_api
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
        """Every device as the EDR sync matches it (id, serial numbers, identity flag): a narrow listing."""
        return sync_devices(self.db)

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
        actor: Actor,
    ) -> Device:
        """Create a device with generated id and nodeId."""
        device = new_device(
            name=name,
            user=user,
            hostname=hostname,
            os=os,
            tags=tags,
            serial_numbers=serial_numbers,
            addresses=addresses,
            client_version=client_version,
        )
        now = self.clock()
        with self.db.session() as session:
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
        """Create or update devices from the API's device JSON; returns (created, updated)."""
        parsed = [device_from_api(item) for item in devices]
        now = self.clock()
        with self.db.session() as session:
            created, updated = upsert_devices(session, parsed, now)
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.IMPORT_DEVICES,
                target="devices",
                details={"created": created, "updated": updated},
            )
        return created, updated

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

    def attributes_with_keys(
        self, keys: Collection[str], *, prefixes: Collection[str] = ()
    ) -> dict[str, dict[str, AttributeValue]]:
        """Live values of the given keys, and of keys starting with ``prefixes``, on every device: device id →
        key → value."""
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
