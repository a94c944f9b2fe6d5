"""What the EDR sync reads from the built-in tailnet, narrowed to what matching and diffing need.

A sync of 50k devices reads every device and every value of its keys once per run: plain columns, no ORM
objects, no ``Device`` with all its fields, and the values as one joined text per device, compared as text with
what the sync wants and decoded only where they differ (a fleet holds a few hundred distinct values among hundreds
of thousands of rows).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, Text, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

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


def current_values(db: Database, keys: Collection[str], now: datetime, prefixes: Collection[str] = ()) -> StoredValues:
    """Live values of ``keys``, and of every key starting with one of ``prefixes`` (a vendor's attribute family,
    e.g. ``fleetPolicy:``), on every device: device id → key → value (expired ones left out).

    The keys are resolved first, so the value scan needs no join. The database joins each device's values into
    one text (``StoredValues``): one row per device instead of one per value.
    """
    if not keys and not prefixes:
        return StoredValues({}, {})
    wanted = [AttributeKeyRow.key.startswith(prefix, autoescape=True) for prefix in prefixes]
    if keys:
        wanted.append(AttributeKeyRow.key.in_(list(keys)))
    with db.session() as session:
        names = dict(session.execute(select(AttributeKeyRow.id, AttributeKeyRow.key).where(or_(*wanted))).all())
        if not names:
            return StoredValues({}, {})
        live = (
            select(AttributeRow.device_id, AttributeRow.key_id, cast(AttributeRow.value, Text).label("value"))
            .where(AttributeRow.key_id.in_(list(names)))
            .where(or_(AttributeRow.expires_at.is_(None), AttributeRow.expires_at > now))
        )
        return StoredValues(dict(session.execute(_joined(live, db.dialect)).all()), names)


def _joined(live: Select[tuple[str, int, str]], dialect: str) -> Select[tuple[str, str]]:
    """Per device, its values as ``<key id>=<stored JSON>`` in key id order, joined by ``SEPARATOR``."""
    if dialect == "postgresql":
        rows = live.subquery()
        part = cast(rows.c.key_id, Text) + "=" + rows.c.value
        joined = func.string_agg(part, aggregate_order_by(literal(SEPARATOR), rows.c.key_id))  # (part, sep ORDER BY)
        return select(rows.c.device_id, joined).group_by(rows.c.device_id)
    # SQLite (3.40 has no ORDER BY inside an aggregate): an ordered subquery, which SQLite does not flatten into
    # an aggregate query, feeds group_concat in its order. Were the order ever lost, texts would only mismatch,
    # and a mismatching device is decoded and compared value by value.
    rows = live.order_by(AttributeRow.device_id, AttributeRow.key_id).subquery()
    part = cast(rows.c.key_id, Text) + "=" + rows.c.value
    return select(rows.c.device_id, func.group_concat(part, SEPARATOR)).group_by(rows.c.device_id)


SEPARATOR = "\x1f"
"""Between a device's values in its joined text: JSON text never holds a raw control character (it escapes them),
so the text splits back unambiguously."""


class StoredValues(Mapping[str, dict[str, AttributeValue]]):
    """Device id → key → live value, as the database joined each device's values into one text.

    A re-sync of 50k devices read 350k value rows and handled each in Python, while nearly every device still
    holds exactly what the sync wants (issue 14). ``holds`` builds the text the database would give for the
    values a sync wants and compares the two strings: only a device whose text differs is decoded (each
    distinct part parsed once) and compared value by value. Equal texts mean equal keys and values of equal
    types (``true`` is not ``1``); a text that differs only in spelling is decoded and found equal.
    """

    __slots__ = ("_decoded", "_ids", "_names", "_orders", "_parsed", "_parts", "_texts")

    def __init__(self, texts: dict[str, str], names: dict[int, str]) -> None:
        self._texts = texts
        self._names = names
        self._ids = {key: key_id for key_id, key in names.items()}
        self._decoded: dict[str, dict[str, AttributeValue]] = {}
        self._parsed: dict[str, tuple[str, AttributeValue]] = {}
        self._parts: dict[tuple[str, type, AttributeValue], str] = {}
        self._orders: dict[tuple[str, ...], tuple[str, ...] | None] = {}

    def __getitem__(self, device_id: str) -> dict[str, AttributeValue]:
        values = self._decoded.get(device_id)
        if values is None:
            values = self._decoded[device_id] = dict(map(self._parse, self._texts[device_id].split(SEPARATOR)))
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._texts

    def get(self, device_id: str, default: Any = None) -> Any:  # without the KeyError of a device holding nothing
        return self[device_id] if device_id in self._texts else default

    def holds(self, device_id: str, wanted: Mapping[str, AttributeValue]) -> bool:
        """Whether ``device_id`` holds exactly ``wanted`` (the same keys, values of the same types) among the
        keys read; ``False`` may still be equal (``self[device_id]`` tells)."""
        stored = self._texts.get(device_id)
        if stored is None:
            return not wanted
        keys = tuple(wanted)
        order = self._orders.get(keys, ())
        if order == ():
            order = self._orders[keys] = self._order(keys)
        if order is None:  # a key never stored
            return False
        parts = self._parts
        joined = []
        try:
            for key in order:
                value = wanted[key]
                part = parts.get((key, value.__class__, value))
                if part is None:
                    part = parts[(key, value.__class__, value)] = f"{self._ids[key]}={json.dumps(value)}"
                joined.append(part)
        except TypeError:  # unhashable: no attribute value is
            return False
        return SEPARATOR.join(joined) == stored

    def _order(self, keys: tuple[str, ...]) -> tuple[str, ...] | None:
        """``keys`` in key id order, as the database joins them (``None`` if one was never stored)."""
        if any(key not in self._ids for key in keys):
            return None
        return tuple(sorted(keys, key=self._ids.__getitem__))

    def _parse(self, part: str) -> tuple[str, AttributeValue]:
        parsed = self._parsed.get(part)
        if parsed is None:
            key_id, _, stored = part.partition("=")
            parsed = self._parsed[part] = (self._names[int(key_id)], json.loads(stored))
        return parsed
