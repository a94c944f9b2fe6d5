"""What the EDR sync reads from the built-in tailnet, narrowed to what matching and diffing need.

A sync of 50k devices reads every device and every value of its keys once per run: plain columns, no ORM
objects, no ``Device`` with all its fields, and each distinct stored value parsed once (a fleet holds a few
hundred distinct values among hundreds of thousands of rows).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Text, cast, or_, select

from app.core.macaddr import matchable_macs
from app.db import Database
from app.db.tables import AttributeKeyRow, AttributeRow, DeviceRow
from app.tailnet.models import AttributeValue
from app.tailnet.posture_identity import HARDWARE_ADDRESSES_FIELD


class SyncDevice(NamedTuple):
    """A device as the sync matches it: its id, its serial numbers, whether posture identity is off, and its
    matchable MAC addresses (normalised; ``app.tailnet.posture_identity``)."""

    id: str
    serial_numbers: tuple[str, ...]
    posture_identity_disabled: bool
    mac_addresses: tuple[str, ...] = ()


def sync_devices(db: Database) -> list[SyncDevice]:
    """Every device's id, serial numbers, posture-identity flag and MACs, in id order.

    MACs are kept in the device's stored JSON (``extra["postureIdentity"]``, from an import that carried them):
    only that list is read, as text, not the whole ``extra`` (50k devices: ~0.1 s more than without MACs)."""
    macs = DeviceRow.extra[("postureIdentity", HARDWARE_ADDRESSES_FIELD)]
    stmt = select(
        DeviceRow.id, cast(DeviceRow.serial_numbers, Text), DeviceRow.posture_identity_disabled, cast(macs, Text)
    ).order_by(DeviceRow.id)
    with db.session() as session:
        return [
            SyncDevice(
                device_id,
                tuple(json.loads(serials)) if serials else (),
                bool(disabled),
                _macs(listed) if listed and not disabled else (),
            )
            for device_id, serials, disabled, listed in session.execute(stmt)
        ]


def _macs(listed: str) -> tuple[str, ...]:
    """The matchable MACs of a stored list (JSON text; ``null`` when the device has none)."""
    values = json.loads(listed)
    return matchable_macs(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()


def current_values(
    db: Database, keys: Collection[str], now: datetime, prefixes: Collection[str] = ()
) -> dict[str, dict[str, AttributeValue]]:
    """Live values of ``keys``, and of every key starting with one of ``prefixes`` (a vendor's attribute family,
    e.g. ``fleetPolicy:``), on every device: device id → key → value (expired ones left out).

    The keys are resolved first, so the value scan needs no join; values come back as their stored JSON text
    and each distinct text is parsed once.
    """
    out: dict[str, dict[str, AttributeValue]] = {}
    if not keys and not prefixes:
        return out
    wanted = [AttributeKeyRow.key.startswith(prefix, autoescape=True) for prefix in prefixes]
    if keys:
        wanted.append(AttributeKeyRow.key.in_(list(keys)))
    with db.session() as session:
        names = dict(session.execute(select(AttributeKeyRow.id, AttributeKeyRow.key).where(or_(*wanted))).all())
        if not names:
            return out
        rows = session.execute(
            select(AttributeRow.device_id, AttributeRow.key_id, cast(AttributeRow.value, Text))
            .where(AttributeRow.key_id.in_(list(names)))
            .where(or_(AttributeRow.expires_at.is_(None), AttributeRow.expires_at > now))
        )
        parsed: dict[str, AttributeValue] = {}
        for device_id, key_id, stored in rows:
            value = parsed.get(stored)
            if value is None:
                value = parsed[stored] = json.loads(stored)
            per_device = out.get(device_id)
            if per_device is None:
                per_device = out[device_id] = {}
            per_device[names[key_id]] = value
    return out
