"""Attribute writes of the built-in tailnet: rule checks, batched sets and deletes, and their audit rows.

A batch (one ``set_many`` call, up to thousands of devices from the EDR sync) is checked against every
attribute rule before anything is read, then applied with a handful of bulk statements inside one write
transaction (``builtin_transactions.run_write``), each change audited in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from app.db import Database, audit, bulk
from app.db.audit import AuditAction
from app.db.tables import AttributeKeyRow, AttributeRow, DeviceRow
from app.tailnet import rules
from app.tailnet.builtin_devices import device_row
from app.tailnet.builtin_expiry import collect_key, purge
from app.tailnet.builtin_transactions import Conflict, chunks, lock_devices
from app.tailnet.errors import DeviceNotFound, NotFound
from app.tailnet.models import Actor, AttributeChanges, AttributeValue, AttributeWrite

Pair = tuple[str, int]
"""A (device id, key id): one attribute value's place."""

ANALYZE_MIN_ROWS = 1000
"""PostgreSQL: a batch inserting at least this many values, and more than a fifth of what the table held at its
last ``ANALYZE``, refreshes the table's statistics (a fresh table has none, and the next batch's look-up of stored
values would scan it)."""


class DeviceRef(NamedTuple):
    """What a batch needs of a device: its id (where values are stored) and its name (for the audit)."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Checked:
    """One change of a batch that passed the rules: a write, or ``None`` to delete ``key``."""

    key: str
    write: AttributeWrite | None


@dataclass(slots=True)
class _Plan:
    """What a batch does: each pair's final state, the audit events in batch order, keys some delete emptied."""

    final: dict[Pair, AttributeWrite | None] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    emptied: set[int] = field(default_factory=set)


def check_changes(changes: AttributeChanges, actor: Actor, now: datetime) -> dict[str, list[Checked]]:
    """Every change checked against the rules before anything is written (a batch is all or nothing).

    Two writes of one key (case-folded) in a batch must agree on its name and type, as the registry would. A
    sync batch repeats a handful of (key, value, expiry) on thousands of devices: each distinct one is checked
    once and its ``Checked`` shared (a conflict still surfaces at the first write that brings it).
    """
    checked: dict[str, list[Checked]] = {}
    batch_types: dict[str, tuple[str, str]] = {}
    namespaces: dict[str, str] = {}
    values: dict[tuple[type, Any, str], AttributeValue] = {}
    done: dict[tuple[Any, ...], Checked] = {}
    for device_id, per_key in changes.items():
        items = checked.setdefault(device_id, [])
        for key, write in per_key.items():
            memo = _memo_key(key, write)
            known = done.get(memo) if memo is not None else None
            if known is None:
                known = _check_one(key, write, actor, now, namespaces, values, batch_types)
                if memo is not None:
                    done[memo] = known
            items.append(known)
    return checked


def _memo_key(key: Any, write: AttributeWrite | None) -> tuple[Any, ...] | None:
    """What makes two changes check alike (``None``: not memoisable, an unhashable value is checked each time)."""
    if write is None:
        memo: tuple[Any, ...] = (key, None)
    else:
        memo = (key, write.value.__class__, write.value, write.expiry)
    try:
        hash(memo)
    except TypeError:
        return None
    return memo


def _check_one(
    key: Any,
    write: AttributeWrite | None,
    actor: Actor,
    now: datetime,
    namespaces: dict[str, str],
    values: dict[tuple[type, Any, str], AttributeValue],
    batch_types: dict[str, tuple[str, str]],
) -> Checked:
    """One change against the rules (key, value, expiry, one name and type per folded key in the batch)."""
    namespace = namespaces.get(key) if isinstance(key, str) else None
    if namespace is None:
        namespace = rules.validate_key(key, actor.namespaces)
        namespaces[key] = namespace
    if write is None:
        return Checked(key, None)
    value = _valid_value(values, write.value, namespace)
    expiry = rules.validate_expiry(write.expiry, now)
    folded = rules.fold_key(key)
    seen = batch_types.get(folded)
    kind = rules.value_type(value)
    if seen is not None:
        rules.check_key_registry(key, kind, seen[0], seen[1])
    batch_types[folded] = (key, kind)
    return Checked(key, AttributeWrite(value, expiry))


def _valid_value(seen: dict[tuple[type, Any, str], AttributeValue], value: Any, namespace: str) -> AttributeValue:
    """``rules.validate_value``, remembered per (type, value, namespace) among the valid values of a batch."""
    try:
        return seen[(type(value), value, namespace)]
    except KeyError:
        seen[(type(value), value, namespace)] = valid = rules.validate_value(value, namespace)
        return valid
    except TypeError:  # unhashable: not a valid value, and validate_value says why
        return rules.validate_value(value, namespace)


def apply_batch(
    db: Database,
    session: Session,
    checked: dict[str, list[Checked]],
    now: datetime,
    actor: str,
    comment: str | None,
    *,
    lock_chunk: int,
) -> None:
    """Apply validated sets and deletes with a handful of bulk queries (sync batches are large)."""
    devices = device_refs(session, list(checked))
    lock_devices(db, session, {row.id for row in devices.values()}, lock_chunk)
    keys = {item.key for items in checked.values() for item in items}
    registry = _key_registry(session, keys, now)
    _register_new_keys(session, checked, registry)
    key_ids = {
        key: registry[rules.fold_key(key)].id
        for key in keys
        if rules.fold_key(key) in registry and registry[rules.fold_key(key)].key == key
    }
    stored, live = _stored_values(session, sorted({row.id for row in devices.values()}), set(key_ids.values()))
    plan = _plan(checked, devices, key_ids, live, now, actor, comment)
    inserted = _write_final(session, plan.final, stored, now, actor, comment)
    audit.record_many(session, plan.events)
    for key_id in sorted(plan.emptied):
        collect_key(session, key_id)
    if db.dialect == "postgresql" and inserted >= ANALYZE_MIN_ROWS:
        refresh_statistics(session, inserted)


def device_refs(session: Session, refs: list[str]) -> dict[str, DeviceRef]:
    """Devices by id or nodeId (id and name only, no ORM rows); ``DeviceNotFound`` for the first missing one.

    Ids first, then nodeIds for the rest: one column per IN list keeps each look-up on its unique index (an OR
    of both lists made PostgreSQL scan the table).
    """
    found: dict[str, DeviceRef] = {}
    for column in (DeviceRow.id, DeviceRow.node_id):
        missing = [ref for ref in dict.fromkeys(refs) if ref not in found]
        for chunk in chunks(missing, 500):
            stmt = select(DeviceRow.id, DeviceRow.node_id, DeviceRow.name).where(column.in_(chunk))
            for device_id, node_id, name in session.execute(stmt):
                ref = DeviceRef(device_id, name)
                found[device_id] = ref
                found[node_id] = ref
    for ref in refs:
        if ref not in found:
            raise DeviceNotFound(f"device {ref!r} not found")
    return {ref: found[ref] for ref in refs}


def refresh_statistics(session: Session, inserted: int) -> None:
    """PostgreSQL: ``ANALYZE device_attributes`` when this batch grew it by more than a fifth since its last one
    (and ``devices`` if it was never analysed), so the next batch's index look-ups are planned as such.

    Runs inside the batch's transaction (ANALYZE may; its sample counts this transaction's own rows), so the
    statistics commit with the batch. A database user that does not own the table gets a warning, not an error.
    """
    tuples = dict(
        session.execute(
            text("SELECT relname, reltuples FROM pg_class WHERE oid IN (to_regclass(:a), to_regclass(:b))"),
            {"a": "device_attributes", "b": "devices"},
        ).all()
    )
    if inserted > max(float(tuples.get("device_attributes") or 0), 0.0) / 5:
        session.execute(text("ANALYZE device_attributes"))
    if float(tuples.get("devices") or 0) <= 0:  # -1 (0 before PostgreSQL 14): never analysed
        session.execute(text("ANALYZE devices"))


def _key_registry(session: Session, keys: set[str], now: datetime) -> dict[str, AttributeKeyRow]:
    """The registered keys among ``keys`` by folded name, after purging their expired values.

    Expired values neither conflict with a new type nor count as current, and a key they alone held is gone.
    """
    folded = {rules.fold_key(key) for key in keys}

    def load() -> dict[str, AttributeKeyRow]:
        rows = session.scalars(select(AttributeKeyRow).where(AttributeKeyRow.key_folded.in_(folded)))
        return {row.key_folded: row for row in rows}

    registry = load()
    if not registry:
        return registry
    # keys with expired values, found through the expires_at index (expired values are few: the sweep purges
    # them). A key_id filter (or DISTINCT) here made SQLite walk the key_id index over every value instead.
    expired = set(session.scalars(select(AttributeRow.key_id).where(AttributeRow.expires_at <= now)))
    to_purge = expired & {row.id for row in registry.values()}
    if to_purge:
        for key_id in sorted(to_purge):
            purge(session, now, key_id)
        registry = load()
    return registry


def _register_new_keys(
    session: Session, checked: dict[str, list[Checked]], registry: dict[str, AttributeKeyRow]
) -> None:
    """Check each write against the key registry and register the keys it does not hold yet (into ``registry``)."""
    new_keys: list[AttributeKeyRow] = []
    passed: set[tuple[str, str]] = set()  # (key, type) already checked: a sync batch repeats them thousands of times
    for items in checked.values():
        for item in items:
            if item.write is None:
                continue
            kind = rules.value_type(item.write.value)
            if (item.key, kind) in passed:
                continue
            passed.add((item.key, kind))
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


def _stored_values(
    session: Session, device_ids: list[str], key_ids: set[int]
) -> tuple[dict[Pair, int], dict[Pair, AttributeValue]]:
    """The values stored now for these devices and keys: (pair → row id, pair → value)."""
    stored: dict[Pair, int] = {}
    live: dict[Pair, AttributeValue] = {}
    if not key_ids:
        return stored, live
    for chunk in chunks(device_ids, 500):
        stmt = select(AttributeRow.id, AttributeRow.device_id, AttributeRow.key_id, AttributeRow.value).where(
            AttributeRow.device_id.in_(chunk), AttributeRow.key_id.in_(key_ids)
        )
        for row_id, device_id, key_id, value in session.execute(stmt):
            stored[(device_id, key_id)] = row_id
            live[(device_id, key_id)] = value
    return stored, live


def _plan(
    checked: dict[str, list[Checked]],
    devices: dict[str, DeviceRef],
    key_ids: dict[str, int],
    live: dict[Pair, AttributeValue],
    now: datetime,
    actor: str,
    comment: str | None,
) -> _Plan:
    """Walk the batch in order over ``live`` (the values as the batch goes along), auditing every change.

    Only each pair's final state is written: a device named by both id and nodeId can see one key deleted
    and set again in one batch. Events are audited later with one bulk INSERT: sync batches write thousands.
    """
    plan = _Plan()
    events = _EventRows(now, actor, comment)
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
                    plan.events.append(events.row(device, item.key, old, None, None))
                    del live[pair]
                    plan.final[pair] = None
                    plan.emptied.add(key_id)
                continue
            live[pair] = item.write.value
            plan.final[pair] = item.write
            plan.events.append(events.row(device, item.key, old, item.write.value, item.write.expiry))
    return plan


def _write_final(
    session: Session,
    final: dict[Pair, AttributeWrite | None],
    stored: dict[Pair, int],
    now: datetime,
    actor: str,
    comment: str | None,
) -> int:
    """Write each pair's final state with bulk statements: DELETE by id, executemany UPDATE and INSERT.

    Returns how many values were inserted. Inserts go through the Core table (no ORM bookkeeping per row), or
    COPY on PostgreSQL.

    A row read in this transaction but gone meanwhile (only expiry purges delete rows without the device lock)
    makes the DELETE match fewer rows, or the UPDATE raise ``StaleDataError``: a conflict to retry.
    """
    gone = [stored[pair] for pair, write in final.items() if write is None and pair in stored]
    for chunk in chunks(gone, 500):
        result = session.execute(
            delete(AttributeRow).where(AttributeRow.id.in_(chunk)), execution_options={"synchronize_session": False}
        )
        if result.rowcount != len(chunk):
            raise Conflict(f"{len(chunk) - result.rowcount} attribute values were deleted concurrently")
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
        bulk.insert_rows(session, AttributeRow.__table__, inserts)
    return len(inserts)


class _EventRows:
    """The audit rows of one batch's attribute changes: ``audit.event`` columns, details ``{"device_id", "device",
    "key", "change": "set" | "delete"}``.

    A sync batch audits thousands of changes that share the time, actor and comment, and whose details repeat a
    few devices' and keys' parts: each part is JSON-encoded once and the details text joined from them
    (``bulk.JSONText``, the very text ``json.dumps`` gives for the dict; a test compares the two).
    """

    __slots__ = ("_base", "_devices", "_keys")

    def __init__(self, now: datetime, actor: str, comment: str | None) -> None:
        self._base = {"at": now, "actor": actor, "action": str(AuditAction.UPDATE_NODE_ATTRIBUTE), "comment": comment}
        self._devices: dict[DeviceRef, str] = {}
        self._keys: dict[tuple[str, bool], str] = {}

    def row(
        self,
        device: DeviceRef,
        key: str,
        old: AttributeValue | None,
        new: AttributeValue | None,
        expiry: datetime | None,
    ) -> dict[str, Any]:
        head = self._devices.get(device)
        if head is None:
            head = self._devices[device] = (
                f'{{"device_id": {json.dumps(device.id)}, "device": {json.dumps(device.name)}, "key": '
            )
        tail = self._keys.get((key, new is None))
        if tail is None:
            tail = self._keys[(key, new is None)] = (
                f'{json.dumps(key)}, "change": {json.dumps("delete" if new is None else "set")}}}'
            )
        return {
            **self._base,
            "target": audit.attribute_target(device.id, key),
            "old_value": old,
            "new_value": new,
            "expiry": expiry,
            "details": bulk.JSONText(head + tail),
        }


def delete_one(
    db: Database,
    session: Session,
    now: datetime,
    device_ref: str,
    key: str,
    *,
    actor: str,
    comment: str | None,
    lock_chunk: int,
) -> None:
    """Delete one live attribute of a device (by id or nodeId); ``NotFound`` if it is not set."""
    device = device_row(session, device_ref)
    lock_devices(db, session, [device.id], lock_chunk)
    attr = _live_attribute(session, device.id, key, now)
    if attr is None:
        raise NotFound(f"attribute {key!r} is not set on device {device_ref!r}")
    _delete_attr(session, attr, now, actor, comment)


def _live_attribute(session: Session, device_id: str, key: str, now: datetime) -> AttributeRow | None:
    """The unexpired value of ``key`` on a device, or None; an expired one is purged (with every expired value
    of that key) on the way."""
    key_row = session.scalar(select(AttributeKeyRow).where(AttributeKeyRow.key == key))
    if key_row is None:
        return None
    attr = session.scalar(
        select(AttributeRow).where(AttributeRow.device_id == device_id, AttributeRow.key_id == key_row.id)
    )
    if attr is not None and attr.expires_at is not None and attr.expires_at <= now:
        purge(session, now, key_row.id)
        return None
    return attr


def _delete_attr(session: Session, attr: AttributeRow, now: datetime, actor: str, comment: str | None) -> None:
    """Delete one value row and audit it; ``Conflict`` if an expiry purge deleted it meanwhile."""
    key, key_id, device_id = attr.key.key, attr.key_id, attr.device_id
    result = session.execute(
        delete(AttributeRow).where(AttributeRow.id == attr.id), execution_options={"synchronize_session": False}
    )
    if result.rowcount != 1:  # an expiry purge deleted it meanwhile: the retry answers NotFound
        raise Conflict(f"attribute {key!r} of device {device_id!r} was deleted concurrently")
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
    collect_key(session, key_id)
