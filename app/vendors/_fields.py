"""Typed readers for fields of a vendor's JSON and the MAC addresses it reports, shared by every vendor module.

A field of the wrong JSON type is a ``VendorDataError`` naming the field and ``where`` (e.g. ``"Kandji device
42"``), so a vendor that changes its schema refuses the whole snapshot rather than writing wrong posture; a
missing or ``null`` field is ``None`` (the vendor has not reported it). Which fields a vendor has, and what
its messages call an item, stay in its module.

MACs are folded by ``app.core.macaddr`` (12 lowercase hex digits). Placeholders (all zeros, broadcast) and
strings that spell no MAC are dropped here, since agents send them routinely; whether a MAC may match a device
(group, locally administered) is the sync's decision (``app.vendors.plan``), not the vendor module's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.core.macaddr import PLACEHOLDER_MACS, normalize_mac
from app.vendors.base import VendorDataError


def optional_str(raw: Mapping[str, Any], field: str, where: str) -> str | None:
    """``raw[field]`` if it is a string, ``None`` if absent or null; ``VendorDataError`` for any other type."""
    value = raw.get(field)
    if value is None or isinstance(value, str):
        return value
    raise VendorDataError(f"{where}: {field} is a {type(value).__name__}, not a string")


def optional_bool(raw: Mapping[str, Any], field: str, where: str) -> bool | None:
    """``raw[field]`` if it is ``true``/``false``, ``None`` if absent or null; ``VendorDataError`` otherwise
    (a ``0``/``1`` or ``"true"`` is not guessed at)."""
    value = raw.get(field)
    if value is None or isinstance(value, bool):
        return value
    raise VendorDataError(f"{where}: {field} is {value!r}, not true or false")


def reported_mac(value: object) -> str | None:
    """``A4:83:E7:11:22:33`` (or ``-``/``.`` separated, or bare) → ``a483e7112233``; ``None`` for a placeholder
    (all zeros, broadcast), an empty or unparsable string, or a value that is not text."""
    mac = normalize_mac(value)
    return None if mac is None or mac in PLACEHOLDER_MACS else mac


def checked_mac(value: object, where: str) -> str | None:
    """``reported_mac`` for a field that must be a string or null: any other JSON type is a ``VendorDataError``
    (a malformed string is still only dropped: placeholders are common and must not refuse a whole snapshot)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise VendorDataError(f"{where}: a MAC address is a {type(value).__name__}, not a string")
    return reported_mac(value)


def reported_macs(values: Iterable[object]) -> tuple[str, ...]:
    """The distinct MACs among ``values`` (``reported_mac``), in their first order."""
    return tuple(dict.fromkeys(mac for mac in map(reported_mac, values) if mac is not None))


def checked_macs(values: Iterable[object], where: str) -> tuple[str, ...]:
    """The distinct MACs among ``values`` (``checked_mac``: strings or nulls only), in their first order."""
    return tuple(dict.fromkeys(mac for value in values if (mac := checked_mac(value, where)) is not None))
