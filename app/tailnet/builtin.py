"""The built-in tailnet: devices and posture attributes in accessbot's own database.

It enforces every attribute rule of FACTS §1, never returns an expired attribute, and audits each
write, delete and expiry in the same transaction as the change.

Concurrent writers are serialised per device, so each write reads the values it replaces (and audits them as
``old``) under the same lock as it writes: on SQLite every attribute transaction starts with ``BEGIN IMMEDIATE``
(SQLite has one writer at a time; a deferred transaction would read before it holds the write lock); on
PostgreSQL a writer locks its devices' rows (``FOR NO KEY UPDATE``) in id order (one order everywhere: no deadlock
between two batches), before reading their attributes. Expiry purges (the sweep, and a writer clearing a key's
expired values on every device) take no device lock: a row one deletes under a writer's feet makes the writer's
DELETE or UPDATE match fewer rows than it read, a conflict retried from the start (and a row a writer changed
first is no longer expired when the purge, blocked on its row lock, rechecks it).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.session import is_locked
from app.db.tables import AttributeKeyRow, AttributeRow, DeviceRow
from app.tailnet import rules
from app.tailnet.devicejson import device_from_api
from app.tailnet.errors import DeviceNotFound, InvalidRequest, NotFound, TailnetUnavailable
from app.tailnet.models import (
    Actor,
    AttributeChanges,
    AttributeSet,
    AttributeValue,
    AttributeWrite,
    Device,
)
from app.tailnet.node_attributes import node_attributes

EXPIRY_ACTOR = "system:expiry"
T = TypeVar("T")

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization failure and deadlock detected: the transaction was rolled back, try it again."""


class _Conflict(Exception):
    """A concurrent transaction changed rows this one had read (a statement matched fewer rows than expected)."""


def _retry_reason(exc: BaseException) -> str | None:
    """Why a failed attribute transaction may be run again: ``locked``, ``conflict``, ``race`` or None (not)."""
    if isinstance(exc, (_Conflict, StaleDataError)):
        return "conflict"
    if isinstance(exc, IntegrityError):
        return "race"  # a lost insert race (a key registered or dropped meanwhile); the retry reads the winner's
    if isinstance(exc, OperationalError) and is_locked(exc):
        return "locked"
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return "conflict"
    return None


@dataclass(frozen=True, slots=True)
class _Checked:
    key: str
    write: AttributeWrite | None


_DEVICE_COLUMNS = [column for column in DeviceRow.__table__.c if column.key != "created"]
"""What a ``Device`` is made of: every column of the device table but its creation time."""


def _to_device(row: Any) -> Device:
    """A ``Device`` from a ``DeviceRow`` or a result row of ``_DEVICE_COLUMNS`` (same attribute names)."""
    return Device(
        id=row.id,
        node_id=row.node_id,
        name=row.name,
        hostname=row.hostname,
        user=row.user,
        os=row.os,
        tags=tuple(row.tags or ()),
        addresses=tuple(row.addresses or ()),
        last_seen=row.last_seen,
        serial_numbers=tuple(row.serial_numbers or ()),
        posture_identity_disabled=row.posture_identity_disabled,
        client_version=row.client_version,
        raw=dict(row.extra or {}),
    )


def new_device_ids() -> tuple[str, str]:
    """A fresh legacy numeric id and a nodeId in Tailscale's style (``n…CNTRL``)."""
    legacy = str(secrets.randbelow(9 * 10**15) + 10**15)
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    node = "n" + "".join(secrets.choice(alphabet) for _ in range(10)) + "CNTRL"
    return legacy, node


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
            rows = session.execute(select(*_DEVICE_COLUMNS).order_by(DeviceRow.name, DeviceRow.id))
            return [_to_device(row) for row in rows]

    def get_device(self, device_id: str) -> Device:
        """One device by id or nodeId."""
        with self.db.session() as session:
            return _to_device(self._device_row(session, device_id))

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
        if not name.strip():
            raise InvalidRequest("device name must not be empty")
        bad_tags = [t for t in tags if not t.startswith("tag:") or len(t) < 5]
        if bad_tags:
            raise InvalidRequest(f"tags must look like tag:name, got {', '.join(bad_tags)}")
        legacy, node = new_device_ids()
        device = Device(
            id=legacy,
            node_id=node,
            name=name.strip(),
            hostname=(hostname or name.split(".", 1)[0]).strip(),
            user=user.strip(),
            os=os,
            tags=tuple(tags),
            addresses=tuple(addresses),
            serial_numbers=tuple(serial_numbers),
            client_version=client_version,
        )
        now = self.clock()
        with self.db.session() as session:
            session.add(self._new_row(device, now))
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
        created = updated = 0
        with self.db.session() as session:
            by_id, by_node = self._existing_rows(session, parsed)
            for device in parsed:
                row = by_id.get(device.id) or (by_node.get(device.node_id) if device.node_id else None)
                if row is None:
                    row = self._new_row(device, now)
                    session.add(row)
                    created += 1
                else:
                    self._fill_row(row, device)
                    updated += 1
                by_id[row.id] = row  # a device listed twice is updated, not created twice
                if row.node_id:
                    by_node[row.node_id] = row
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.IMPORT_DEVICES,
                target="devices",
                details={"created": created, "updated": updated},
            )
        return created, updated

    @staticmethod
    def _existing_rows(session: Session, devices: list[Device]) -> tuple[dict[str, DeviceRow], dict[str, DeviceRow]]:
        """The stored rows of ``devices`` by id and by nodeId, read in a few chunked queries."""
        by_id: dict[str, DeviceRow] = {}
        by_node: dict[str, DeviceRow] = {}
        ids = sorted({device.id for device in devices})
        node_ids = sorted({device.node_id for device in devices if device.node_id})
        for column, values in ((DeviceRow.id, ids), (DeviceRow.node_id, node_ids)):
            for chunk in _chunks(values, 500):
                for row in session.scalars(select(DeviceRow).where(column.in_(chunk))):
                    by_id[row.id] = row
                    if row.node_id:
                        by_node[row.node_id] = row
        return by_id, by_node

    def _new_row(self, device: Device, now: datetime) -> DeviceRow:
        row = DeviceRow(id=device.id, node_id=device.node_id, created=now)
        self._fill_row(row, device)
        return row

    @staticmethod
    def _fill_row(row: DeviceRow, device: Device) -> None:
        extra = {
            k: v
            for k, v in device.raw.items()
            if k
            not in (
                "id",
                "nodeId",
                "name",
                "hostname",
                "user",
                "os",
                "tags",
                "addresses",
                "lastSeen",
                "postureIdentity",
                "clientVersion",
            )
        }
        row.node_id = device.node_id
        row.name = device.name
        row.hostname = device.hostname
        row.user = device.user
        row.os = device.os
        row.client_version = device.client_version
        row.tags = list(device.tags)
        row.addresses = list(device.addresses)
        row.serial_numbers = list(device.serial_numbers)
        row.posture_identity_disabled = device.posture_identity_disabled
        row.last_seen = device.last_seen
        row.extra = extra

    @staticmethod
    def _device_row(session: Session, device_id: str) -> DeviceRow:
        row = session.get(DeviceRow, device_id)
        if row is None:
            row = session.scalar(select(DeviceRow).where(DeviceRow.node_id == device_id))
        if row is None:
            raise DeviceNotFound(f"device {device_id!r} not found")
        return row

    # -- attributes ----------------------------------------------------------------------------------

    def get_attributes(self, device_id: str) -> AttributeSet:
        """Live attributes of a device, with the read-only ``node:`` ones; an expired attribute is never returned."""
        now = self.clock()
        with self.db.session() as session:
            row = self._device_row(session, device_id)
            stmt = (
                select(AttributeRow)
                .where(AttributeRow.device_id == row.id)
                .where(or_(AttributeRow.expires_at.is_(None), AttributeRow.expires_at > now))
            )
            attributes: dict[str, AttributeValue] = node_attributes(_to_device(row))
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
            device = self._device_row(session, device_id)
            self._lock_devices(session, [device.id])
            attr = self._live_attribute(session, device.id, key, now)
            if attr is None:
                raise NotFound(f"attribute {key!r} is not set on device {device_id!r}")
            self._delete_attr(session, attr, now, actor.id, comment)

        self._run(work)

    def set_many(self, changes: AttributeChanges, *, actor: Actor, comment: str | None = None) -> None:
        """Apply sets and deletes across devices atomically: all of them, or none if any rule fails."""
        comment = rules.validate_comment(comment)
        now = self.clock()
        checked: dict[str, list[_Checked]] = {}
        batch_types: dict[str, tuple[str, str]] = {}
        for device_id, per_key in changes.items():
            items = checked.setdefault(device_id, [])
            for key, write in per_key.items():
                namespace = rules.validate_key(key, actor.namespaces)
                if write is not None:
                    value = rules.validate_value(write.value, namespace)
                    expiry = rules.validate_expiry(write.expiry, now)
                    folded = rules.fold_key(key)
                    seen = batch_types.get(folded)
                    kind = rules.value_type(value)
                    if seen is not None:
                        rules.check_key_registry(key, kind, seen[0], seen[1])
                    batch_types[folded] = (key, kind)
                    write = AttributeWrite(value, expiry)
                items.append(_Checked(key, write))

        self._run(lambda session, now: self._apply_batch(session, checked, now, actor.id, comment))

    def attributes_with_keys(self, keys: Collection[str]) -> dict[str, dict[str, AttributeValue]]:
        """Live values of the given keys on every device, in one query: device id → key → value."""
        now = self.clock()
        out: dict[str, dict[str, AttributeValue]] = {}
        if not keys:
            return out
        with self.db.session() as session:
            rows = session.execute(
                select(AttributeRow.device_id, AttributeKeyRow.key, AttributeRow.value)
                .join(AttributeKeyRow, AttributeRow.key_id == AttributeKeyRow.id)
                .where(AttributeKeyRow.key.in_(list(keys)))
                .where(or_(AttributeRow.expires_at.is_(None), AttributeRow.expires_at > now))
            )
            for device_id, key, value in rows:
                out.setdefault(device_id, {})[key] = value
        return out

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
        return self._run(lambda session, now: self._purge(session, now))

    # -- internals -----------------------------------------------------------------------------------

    def _run(self, work: Callable[[Session, datetime], T]) -> T:
        """Run ``work`` in one write transaction, retrying a few times on a lost race, a conflict or a lock.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it holds the write lock before its first read,
        so what ``work`` reads is what it writes over. When retries run out, a lock or a conflict is a
        ``TailnetUnavailable`` (503 class: nothing was written, try again).
        """
        attempts = 4
        for attempt in range(attempts):
            try:
                with self.db.session() as session:
                    if self.db.dialect == "sqlite":
                        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                    return work(session, self.clock())  # "now" taken once the write lock is held
            except (_Conflict, StaleDataError, DBAPIError) as exc:
                reason = _retry_reason(exc)
                if reason is None:
                    raise
                if attempt == attempts - 1:
                    if reason == "locked":
                        raise TailnetUnavailable(
                            "the database is busy (another writer held its lock too long); nothing was written, "
                            "try again"
                        ) from exc
                    if reason == "conflict":
                        raise TailnetUnavailable(
                            "concurrent writes to the same attributes kept conflicting; nothing was written, try again"
                        ) from exc
                    raise
                if reason != "locked":  # the busy timeout already waited; a conflict retries after a short jitter
                    time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - not cryptographic
        raise AssertionError("unreachable")

    def _lock_devices(self, session: Session, device_ids: Iterable[str]) -> None:
        """On PostgreSQL, lock these devices' rows (``FOR NO KEY UPDATE``) in id order until the transaction ends.

        Every attribute writer locks its devices before reading their attributes, always in id order (so two
        batches sharing devices queue instead of deadlocking). SQLite needs nothing: ``_run`` began with
        ``BEGIN IMMEDIATE``, which already excludes every other writer.
        """
        if self.db.dialect != "postgresql":
            return
        for chunk in _chunks(sorted(set(device_ids)), self.max_batch_devices):
            session.execute(
                select(DeviceRow.id)
                .where(DeviceRow.id.in_(chunk))
                .order_by(DeviceRow.id)
                .with_for_update(key_share=True)
            ).all()

    def _device_rows(self, session: Session, refs: list[str]) -> dict[str, DeviceRow]:
        """Devices by id or nodeId, loaded in chunks; ``DeviceNotFound`` for the first missing one."""
        found: dict[str, DeviceRow] = {}
        for chunk in _chunks(refs, 500):
            for row in session.scalars(
                select(DeviceRow).where(or_(DeviceRow.id.in_(chunk), DeviceRow.node_id.in_(chunk)))
            ):
                found[row.id] = row
                found[row.node_id] = row
        for ref in refs:
            if ref not in found:
                raise DeviceNotFound(f"device {ref!r} not found")
        return {ref: found[ref] for ref in refs}

    def _apply_batch(
        self, session: Session, checked: dict[str, list[_Checked]], now: datetime, actor: str, comment: str | None
    ) -> None:
        """Apply validated sets and deletes with a handful of bulk queries (sync batches are large)."""
        devices = self._device_rows(session, list(checked))
        self._lock_devices(session, {row.id for row in devices.values()})
        keys = {item.key for items in checked.values() for item in items}
        folded = {rules.fold_key(key) for key in keys}

        def load_registry() -> dict[str, AttributeKeyRow]:
            rows = session.scalars(select(AttributeKeyRow).where(AttributeKeyRow.key_folded.in_(folded)))
            return {row.key_folded: row for row in rows}

        registry = load_registry()
        expired = select(AttributeRow.id).where(
            AttributeRow.key_id.in_([row.id for row in registry.values()]), AttributeRow.expires_at <= now
        )
        if registry and session.scalar(expired.limit(1)) is not None:
            for row in list(registry.values()):  # expired values neither conflict nor count as current
                self._purge(session, now, row.id)
            registry = load_registry()
        new_keys: list[AttributeKeyRow] = []
        for items in checked.values():
            for item in items:
                if item.write is None:
                    continue
                kind = rules.value_type(item.write.value)
                existing = registry.get(rules.fold_key(item.key))
                if existing is None:
                    existing = AttributeKeyRow(key=item.key, key_folded=rules.fold_key(item.key), value_type=kind)
                    new_keys.append(existing)
                    registry[existing.key_folded] = existing
                else:
                    rules.check_key_registry(item.key, kind, existing.key, existing.value_type)
        # inserted in one order by every writer: two batches registering the same new keys conflict, never deadlock
        session.add_all(sorted(new_keys, key=lambda row: row.key_folded))
        session.flush()
        key_ids = {
            key: registry[rules.fold_key(key)].id
            for key in keys
            if rules.fold_key(key) in registry and registry[rules.fold_key(key)].key == key
        }
        device_ids = sorted({row.id for row in devices.values()})
        stored: dict[tuple[str, int], int] = {}  # (device, key id) → row id of the values stored now
        live: dict[tuple[str, int], AttributeValue] = {}  # the values as this batch goes along
        if key_ids:
            for chunk in _chunks(device_ids, 500):
                stmt = select(AttributeRow.id, AttributeRow.device_id, AttributeRow.key_id, AttributeRow.value).where(
                    AttributeRow.device_id.in_(chunk), AttributeRow.key_id.in_(set(key_ids.values()))
                )
                for row_id, device_id, key_id, value in session.execute(stmt):
                    stored[(device_id, key_id)] = row_id
                    live[(device_id, key_id)] = value
        emptied: set[int] = set()
        events: list[dict[str, Any]] = []  # audited with one bulk INSERT: sync batches write thousands
        # Changes are audited one by one in batch order, but only each pair's final state is written: a device
        # named by both id and nodeId can see one key deleted and set again in one batch.
        final: dict[tuple[str, int], AttributeWrite | None] = {}
        for ref, items in checked.items():
            device = devices[ref]
            for item in items:
                key_id = key_ids.get(item.key)
                if key_id is None:  # deleting a key no device holds
                    continue
                pair = (device.id, key_id)
                old = live.get(pair)
                if item.write is None:
                    if pair in live:
                        events.append(self._change_event(now, actor, comment, device, item.key, old, None, None))
                        del live[pair]
                        final[pair] = None
                        emptied.add(key_id)
                    continue
                live[pair] = item.write.value
                final[pair] = item.write
                events.append(
                    self._change_event(now, actor, comment, device, item.key, old, item.write.value, item.write.expiry)
                )
        self._write_final(session, final, stored, now, actor, comment)
        audit.record_many(session, events)
        for key_id in sorted(emptied):
            self._collect_key(session, key_id)

    @staticmethod
    def _write_final(
        session: Session,
        final: dict[tuple[str, int], AttributeWrite | None],
        stored: dict[tuple[str, int], int],
        now: datetime,
        actor: str,
        comment: str | None,
    ) -> None:
        """Write each pair's final state with bulk statements: DELETE by id, executemany UPDATE and INSERT.

        A row read in this transaction but gone meanwhile (only expiry purges delete rows without the device lock)
        makes the DELETE match fewer rows, or the UPDATE raise ``StaleDataError``: a conflict to retry.
        """
        gone = [stored[pair] for pair, write in final.items() if write is None and pair in stored]
        for chunk in _chunks(gone, 500):
            result = session.execute(
                delete(AttributeRow).where(AttributeRow.id.in_(chunk)), execution_options={"synchronize_session": False}
            )
            if result.rowcount != len(chunk):
                raise _Conflict(f"{len(chunk) - result.rowcount} attribute values were deleted concurrently")
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for (device_id, key_id), write in final.items():
            if write is None:
                continue
            values = {
                "value": write.value,
                "expires_at": write.expiry,
                "comment": comment,
                "updated_at": now,
                "updated_by": actor,
            }
            if (device_id, key_id) in stored:
                updates.append({"id": stored[(device_id, key_id)], **values})
            else:
                inserts.append({"device_id": device_id, "key_id": key_id, **values})
        if updates:
            session.execute(update(AttributeRow), updates)
        if inserts:
            session.execute(insert(AttributeRow), inserts)

    @staticmethod
    def _change_event(
        now: datetime,
        actor: str,
        comment: str | None,
        device: DeviceRow,
        key: str,
        old: AttributeValue | None,
        new: AttributeValue | None,
        expiry: datetime | None,
    ) -> dict[str, Any]:
        return audit.event(
            at=now,
            actor=actor,
            action=AuditAction.UPDATE_NODE_ATTRIBUTE,
            target=audit.attribute_target(device.id, key),
            old=old,
            new=new,
            expiry=expiry,
            comment=comment,
            details={
                "device_id": device.id,
                "device": device.name,
                "key": key,
                "change": "delete" if new is None else "set",
            },
        )

    def _purge(self, session: Session, now: datetime, key_id: int | None = None) -> int:
        stmt = delete(AttributeRow).where(AttributeRow.expires_at <= now)
        if key_id is not None:
            stmt = stmt.where(AttributeRow.key_id == key_id)
        gone = session.execute(
            stmt.returning(AttributeRow.device_id, AttributeRow.key_id, AttributeRow.value, AttributeRow.expires_at)
        ).all()
        if not gone:
            return 0
        keys = {
            row.id: row.key
            for row in session.scalars(select(AttributeKeyRow).where(AttributeKeyRow.id.in_({g[1] for g in gone})))
        }
        for device_id, gone_key_id, value, expires_at in sorted(gone, key=lambda g: g[3]):
            audit.record(
                session,
                at=expires_at,
                actor=EXPIRY_ACTOR,
                action=AuditAction.UPDATE_NODE_ATTRIBUTE,
                target=audit.attribute_target(device_id, keys[gone_key_id]),
                old=value,
                new=None,
                details={"device_id": device_id, "key": keys[gone_key_id], "change": "expire"},
            )
        for gone_key_id in keys:
            self._collect_key(session, gone_key_id)
        return len(gone)

    @staticmethod
    def _collect_key(session: Session, key_id: int) -> None:
        """Drop a key from the registry once no device holds it (so its type can be chosen anew)."""
        session.flush()
        if session.scalar(select(AttributeRow.id).where(AttributeRow.key_id == key_id).limit(1)) is not None:
            return
        try:
            with session.begin_nested():
                session.execute(delete(AttributeKeyRow).where(AttributeKeyRow.id == key_id))
        except IntegrityError:
            return  # a concurrent writer just used the key; keep it

    def _live_attribute(self, session: Session, device_id: str, key: str, now: datetime) -> AttributeRow | None:
        key_row = session.scalar(select(AttributeKeyRow).where(AttributeKeyRow.key == key))
        if key_row is None:
            return None
        attr = session.scalar(
            select(AttributeRow).where(AttributeRow.device_id == device_id, AttributeRow.key_id == key_row.id)
        )
        if attr is not None and attr.expires_at is not None and attr.expires_at <= now:
            self._purge(session, now, key_row.id)
            return None
        return attr

    def _delete_attr(
        self, session: Session, attr: AttributeRow, now: datetime, actor: str, comment: str | None
    ) -> None:
        key, key_id, device_id = attr.key.key, attr.key_id, attr.device_id
        result = session.execute(
            delete(AttributeRow).where(AttributeRow.id == attr.id), execution_options={"synchronize_session": False}
        )
        if result.rowcount != 1:  # an expiry purge deleted it meanwhile: the retry answers NotFound
            raise _Conflict(f"attribute {key!r} of device {device_id!r} was deleted concurrently")
        session.expunge(attr)
        audit.record(
            session,
            at=now,
            actor=actor,
            action=AuditAction.UPDATE_NODE_ATTRIBUTE,
            target=audit.attribute_target(device_id, key),
            old=attr.value,
            new=None,
            comment=comment,
            details={"device_id": device_id, "key": key, "change": "delete"},
        )
        self._collect_key(session, key_id)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
