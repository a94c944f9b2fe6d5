"""Devices of the built-in tailnet: rows of the device table to and from ``Device``, look-ups and imports.

Kept apart from the attribute code because devices change rarely (an admin adds or imports them) while
attributes are written all day; the attribute writers only look devices up and lock them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.timefmt import format_rfc3339
from app.db.tables import DeviceRow
from app.db.tables.tailnet import DeviceGenerationRow
from app.tailnet.builtin_transactions import chunks
from app.tailnet.device_input import check_addresses, check_os, check_tags, check_user
from app.tailnet.devicejson import KEY_EXPIRY, ZERO_TIME_TEXT
from app.tailnet.errors import DeviceNotFound, InvalidRequest
from app.tailnet.models import Device
from app.tailnet.posture_identity import HARDWARE_ADDRESSES_FIELD, raw_hardware_addresses

DEVICE_COLUMNS = list(DeviceRow.__table__.c)
"""What a ``Device`` is made of: every column of the device table (its creation time becomes ``raw["created"]``
unless the device's own JSON, kept from an import, has one)."""

_API_FIELDS = (
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
"""Device JSON fields stored in their own columns; any other field of an imported device is kept in ``extra``."""

INDEX_COLUMNS = [
    DeviceRow.id,
    DeviceRow.node_id,
    DeviceRow.name,
    DeviceRow.hostname,
    DeviceRow.user,
    DeviceRow.os,
    DeviceRow.client_version,
    *(cast(column, String) for column in (DeviceRow.tags, DeviceRow.addresses, DeviceRow.serial_numbers)),
    DeviceRow.posture_identity_disabled,
    DeviceRow.last_seen,
]
"""What the Slack device index needs: every device column but ``extra`` and ``created``, the JSON lists as text
(decoded here, not by the driver or the ORM type)."""
_GENERATION_ID = 1

_NODE_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


def to_device(row: Any) -> Device:
    """A ``Device`` from a ``DeviceRow`` or a result row of ``DEVICE_COLUMNS`` (same attribute names)."""
    raw = dict(row.extra or {})
    if "created" not in raw and row.created is not None:
        raw["created"] = format_rfc3339(row.created)
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
        raw=raw,
    )


def index_devices(session: Session, batch: int = 1000) -> Iterator[Device]:
    """Every device, ordered by name, without ``raw`` (the vendor JSON nothing searching devices reads).

    Plain tuples of the needed columns on the session's connection (no ORM loading), fetched ``batch`` rows at a
    time, the JSON lists decoded here with a memo (tags and empty lists repeat): at 50k devices 2-3x faster than
    ``list_devices``, and yielded as read so that the consumer can pace itself.
    """
    memo: dict[str | None, tuple[str, ...]] = {None: ()}

    def strings(text: str | None) -> tuple[str, ...]:
        found = memo.get(text)
        if found is None:
            found = memo[text] = tuple(json.loads(text) or ()) if text else ()
            if len(memo) > 4096:  # unique values (addresses) need no memo: keep it small
                memo.clear()
                memo[None] = ()
        return found

    result = session.connection().execute(select(*INDEX_COLUMNS).order_by(DeviceRow.name, DeviceRow.id))
    for rows in result.partitions(batch):
        for row in rows:
            yield Device(
                id=row[0],
                node_id=row[1],
                name=row[2],
                hostname=row[3],
                user=row[4],
                os=row[5],
                client_version=row[6],
                tags=strings(row[7]),
                addresses=strings(row[8]),
                serial_numbers=strings(row[9]),
                posture_identity_disabled=row[10],
                last_seen=row[11],
            )


def device_generation(session: Session) -> int:
    """The device table's change counter (0 when it was never bumped)."""
    value = session.scalar(select(DeviceGenerationRow.generation).where(DeviceGenerationRow.id == _GENERATION_ID))
    return value or 0


def bump_generation(session: Session) -> None:
    """Count a change of the device table, in the caller's transaction (it commits or rolls back with it).

    The migration inserts the counter's row; should it be missing (a truncated table), it is inserted here.
    """
    bump = update(DeviceGenerationRow).where(DeviceGenerationRow.id == _GENERATION_ID)
    bump = bump.values(generation=DeviceGenerationRow.generation + 1)
    if session.execute(bump).rowcount:  # type: ignore[attr-defined]
        return
    try:
        with session.begin_nested():
            session.add(DeviceGenerationRow(id=_GENERATION_ID, generation=1))
    except IntegrityError:  # inserted concurrently: bump that row
        session.execute(bump)


def add_row(session: Session, device: Device, now: datetime) -> None:
    """Store a new device, counting the change."""
    session.add(new_row(device, now))
    bump_generation(session)


def new_device_ids() -> tuple[str, str]:
    """A fresh legacy numeric id and a nodeId in Tailscale's style (``n…CNTRL``)."""
    legacy = str(secrets.randbelow(9 * 10**15) + 10**15)
    node = "n" + "".join(secrets.choice(_NODE_ID_ALPHABET) for _ in range(10)) + "CNTRL"
    return legacy, node


def new_device(
    *,
    name: str,
    user: str,
    hostname: str | None,
    os: str,
    tags: Iterable[str],
    serial_numbers: Iterable[str],
    addresses: Iterable[str],
    client_version: str,
    tailnet_name: str,
    now: datetime,
    os_version: str = "",
) -> Device:
    """A device to add by hand, with generated ids, keys and Tailscale's defaults; ``InvalidRequest`` (one line
    naming the field) for an empty name, a user that is no email, an address that is no Tailscale address, a
    malformed tag or an unknown OS.

    A bare name becomes the MagicDNS name ``<name>.<tailnet name>``; a name with a dot is taken as an FQDN."""
    name = name.strip()
    if not name:
        raise InvalidRequest("device name must not be empty")
    if any(ch.isspace() for ch in name) or name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidRequest(f"device name {name!r} is not a DNS name (no spaces, no empty labels)")
    user = check_user(user)
    tag_tuple = check_tags(list(tags))
    address_tuple = check_addresses(list(addresses))
    os = check_os(os)
    fqdn = name if "." in name else f"{name}.{tailnet_name}"
    legacy, node = new_device_ids()
    key_expiry_disabled = bool(tag_tuple)  # Tailscale disables key expiry of tagged devices
    raw = {
        "authorized": True,
        "created": format_rfc3339(now),
        "keyExpiryDisabled": key_expiry_disabled,
        "expires": ZERO_TIME_TEXT if key_expiry_disabled else format_rfc3339(now + KEY_EXPIRY),
        "machineKey": "mkey:" + secrets.token_hex(32),
        "nodeKey": "nodekey:" + secrets.token_hex(32),
        "tailnetLockKey": "nlpub:" + secrets.token_hex(32),
        "tailnetLockError": "",
        "updateAvailable": False,
        "blocksIncomingConnections": False,
        "isExternal": False,
        "connectedToControl": False,
        "isEphemeral": False,
    }
    if os_version.strip():
        raw["osVersion"] = os_version.strip()  # not a device field of the API: the source of node:osVersion
    return Device(
        id=legacy,
        node_id=node,
        name=fqdn,
        hostname=(hostname or fqdn.split(".", 1)[0]).strip(),
        user=user,
        os=os,
        tags=tag_tuple,
        addresses=address_tuple,
        serial_numbers=tuple(serial_numbers),
        client_version=client_version,
        raw=raw,
    )


def named_like(session: Session, names: Iterable[str]) -> list[tuple[str, str]]:
    """``(id, name)`` of every device whose name is one of ``names``, compared case-insensitively (chunked)."""
    folded = sorted({name.lower() for name in names})
    found: list[tuple[str, str]] = []
    for chunk in chunks(folded, 500):
        rows = session.execute(select(DeviceRow.id, DeviceRow.name).where(func.lower(DeviceRow.name).in_(chunk)))
        found.extend((row.id, row.name) for row in rows)
    return found


def devices_named(session: Session, name: str) -> list[str]:
    """Ids of the devices called ``name``, compared as DNS does (case-insensitively)."""
    return list(session.scalars(select(DeviceRow.id).where(func.lower(DeviceRow.name) == name.lower())))


def device_row(session: Session, device_id: str) -> DeviceRow:
    """One device's row by id or nodeId; ``DeviceNotFound`` if neither matches."""
    row = session.get(DeviceRow, device_id)
    if row is None:
        row = session.scalar(select(DeviceRow).where(DeviceRow.node_id == device_id))
    if row is None:
        raise DeviceNotFound(f"device {device_id!r} not found")
    return row


def device_rows(session: Session, refs: list[str]) -> dict[str, DeviceRow]:
    """Devices by id or nodeId, loaded in chunks; ``DeviceNotFound`` for the first missing one."""
    found: dict[str, DeviceRow] = {}
    for chunk in chunks(refs, 500):
        for row in session.scalars(select(DeviceRow).where(or_(DeviceRow.id.in_(chunk), DeviceRow.node_id.in_(chunk)))):
            found[row.id] = row
            found[row.node_id] = row
    for ref in refs:
        if ref not in found:
            raise DeviceNotFound(f"device {ref!r} not found")
    return {ref: found[ref] for ref in refs}


def new_row(device: Device, now: datetime) -> DeviceRow:
    """A row for a device not stored yet, created ``now``."""
    row = DeviceRow(id=device.id, node_id=device.node_id, created=now)
    fill_row(row, device)
    return row


def fill_row(row: DeviceRow, device: Device) -> None:
    """Copy ``device`` onto ``row``; device JSON fields without a column of their own go to ``extra``."""
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
    extra = {k: v for k, v in device.raw.items() if k not in _API_FIELDS}
    hardware = raw_hardware_addresses(device.raw.get("postureIdentity"))
    if hardware:  # MACs, for EDR matching (app.tailnet.posture_identity); the serials have their own column
        extra["postureIdentity"] = {HARDWARE_ADDRESSES_FIELD: hardware}
    row.extra = extra


def upsert_devices(session: Session, devices: list[Device], now: datetime) -> tuple[int, int]:
    """Create or update ``devices`` (matched by id, else nodeId); returns (created, updated)."""
    created = updated = 0
    by_id, by_node = _existing_rows(session, devices)
    for device in devices:
        row = by_id.get(device.id) or (by_node.get(device.node_id) if device.node_id else None)
        if row is None:
            row = new_row(device, now)
            session.add(row)
            created += 1
        else:
            fill_row(row, device)
            updated += 1
        by_id[row.id] = row  # a device listed twice is updated, not created twice
        if row.node_id:
            by_node[row.node_id] = row
    if devices:
        bump_generation(session)
    return created, updated


def _existing_rows(session: Session, devices: list[Device]) -> tuple[dict[str, DeviceRow], dict[str, DeviceRow]]:
    """The stored rows of ``devices`` by id and by nodeId, read in a few chunked queries."""
    by_id: dict[str, DeviceRow] = {}
    by_node: dict[str, DeviceRow] = {}
    ids = sorted({device.id for device in devices})
    node_ids = sorted({device.node_id for device in devices if device.node_id})
    for column, values in ((DeviceRow.id, ids), (DeviceRow.node_id, node_ids)):
        for chunk in chunks(values, 500):
            for row in session.scalars(select(DeviceRow).where(column.in_(chunk))):
                by_id[row.id] = row
                if row.node_id:
                    by_node[row.node_id] = row
    return by_id, by_node
