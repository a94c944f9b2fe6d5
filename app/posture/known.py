"""The one table of posture attributes accessbot knows, with value hints for lint.

Tailscale's own ``node:`` and ``ip:`` attributes are declared here. Every vendor's attributes, with their
allowed values and hints, come from its ``SPEC`` in the vendor registry; each also appears in the
``custom:<namespace>_<name>`` form it takes on a real tailnet (its allowed values and hints mapped with
``app.vendors.mapping``, exactly as the sync writes them). Every vendor's freshness marker
``<namespace>:stale`` (``app.vendors.plan``) is known as a boolean, with ``stale_marker`` naming its vendor.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from functools import cache

from app.tailnet.models import CUSTOM_NAMESPACE
from app.vendors.base import AttributeFamily, KnownAttribute
from app.vendors.mapping import custom_key, custom_value
from app.vendors.plan import stale_key
from app.vendors.registry import REGISTRY

OS_NAMES = ("macos", "windows", "linux", "ios", "android", "freebsd", "openbsd", "illumos", "js")

_OS_HINTS = {
    "darwin": "macos",
    "mac": "macos",
    "osx": "macos",
    "macosx": "macos",
    "win": "windows",
    "win32": "windows",
    "win64": "windows",
    "ipados": "ios",
}

BUILTIN_ATTRIBUTES: tuple[KnownAttribute, ...] = (
    KnownAttribute("node:os", "string", OS_NAMES, description="Operating system of the device", hints=_OS_HINTS),
    KnownAttribute("node:osVersion", "string", description="Operating system version", version=True),
    KnownAttribute("node:tsVersion", "string", description="Tailscale client version", version=True),
    KnownAttribute("node:tsReleaseTrack", "string", ("stable", "unstable"), description="Tailscale release track"),
    KnownAttribute("node:tsAutoUpdate", "boolean", description="Whether Tailscale updates itself"),
    KnownAttribute("node:tsStateEncrypted", "boolean", description="Whether Tailscale's state is encrypted"),
    KnownAttribute("ip:country", "string", description="Country of the device's IP (ISO 3166-1 alpha-2)"),
)
"""Tailscale's built-in attributes (``hints``: common wrong values → the value meant, see ``KnownAttribute``)."""

VALUE_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "ip:country": (re.compile(r"[A-Z]{2}"), "an ISO 3166-1 alpha-2 code in capitals, e.g. 'CA'"),
}
"""Attributes whose values follow a pattern rather than a fixed list: pattern and how to describe it."""


def _vendor_attributes() -> list[KnownAttribute]:
    return [attribute for spec in REGISTRY.values() for attribute in spec.attributes]


def _family_forms() -> list[tuple[str, AttributeFamily]]:
    """(key prefix, family) of every vendor attribute family, in its own form and in its ``custom:`` form."""
    forms: list[tuple[str, AttributeFamily]] = []
    for spec in REGISTRY.values():
        for family in spec.families:
            forms += [(family.prefix, family), (custom_key(family.prefix), family)]
    return forms


def _fold(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text).casefold()


@cache
def _table() -> dict[str, KnownAttribute]:
    table: dict[str, KnownAttribute] = {a.key: a for a in BUILTIN_ATTRIBUTES}
    for attribute in _vendor_attributes():
        table[attribute.key] = attribute
        mapped_values = tuple(dict.fromkeys(v for v in map(custom_value, attribute.values) if isinstance(v, str)))
        table[custom_key(attribute.key)] = replace(attribute, key=custom_key(attribute.key), values=mapped_values)
    for key, label in _stale_markers().items():
        table[key] = KnownAttribute(
            key, "boolean", description=f"Written as true when the {label} agent has not checked in recently"
        )
    return table


def _stale_markers() -> dict[str, str]:
    """``huntress:stale`` and ``custom:huntress_stale`` → ``Huntress``, for every vendor (not cached: a few
    entries, and always those of the current ``REGISTRY``)."""
    markers: dict[str, str] = {}
    for spec in REGISTRY.values():
        markers[stale_key(spec)] = markers[custom_key(stale_key(spec))] = spec.label
    return markers


def stale_marker(key: str) -> str | None:
    """The vendor label whose freshness marker ``key`` is (``huntress:stale`` → ``Huntress``), else ``None``."""
    return _stale_markers().get(key)


@cache
def _hints() -> dict[str, dict[str, str]]:
    """Key → folded wrong value → value meant: each attribute's own hints, and for a vendor attribute's
    ``custom:`` form its hints and its verbatim values, mapped as the sync maps values."""
    hints: dict[str, dict[str, str]] = {}
    for attribute in (*BUILTIN_ATTRIBUTES, *_vendor_attributes()):
        if attribute.hints:
            hints[attribute.key] = {_fold(wrong): right for wrong, right in attribute.hints.items()}
    for attribute in _vendor_attributes():
        if attribute.type != "string":
            continue
        mapped: dict[str, str] = {}
        for wrong, right in hints.get(attribute.key, {}).items():
            value = custom_value(right)
            if isinstance(value, str):
                mapped[wrong] = value
        for original in attribute.values:  # the vendor's spelling used on a mapped key
            value = custom_value(original)
            if isinstance(value, str):
                mapped.setdefault(_fold(original), value)
        if mapped:
            hints[custom_key(attribute.key)] = mapped
    return hints


def known_attributes() -> dict[str, KnownAttribute]:
    """Every known attribute by key: built-ins, vendor attributes and their mapped ``custom:`` forms."""
    return dict(_table())


def known_attribute(key: str) -> KnownAttribute | None:
    """The known attribute ``key`` (case-sensitive, as Tailscale compares keys), or ``None``.

    A key under a vendor's attribute family (``fleetPolicy:<any name>``, ``custom:fleetPolicy_<any name>``) is
    known with the family's type: its names come from the customer's own data, not from a fixed list.
    """
    attribute = _table().get(key)
    if attribute is not None:
        return attribute
    for prefix, family in _family_forms():
        if key.startswith(prefix) and len(key) > len(prefix):
            return KnownAttribute(key, family.type, description=family.description)
    return None


def known_namespaces() -> set[str]:
    """``node``, ``ip``, ``custom`` and every vendor's namespace."""
    return {"node", "ip", CUSTOM_NAMESPACE} | {n for spec in REGISTRY.values() for n in spec.namespaces}


def vendor_custom_prefixes() -> set[str]:
    """``custom:huntress_`` etc.: the prefixes of mapped vendor keys on a real tailnet."""
    return {f"{CUSTOM_NAMESPACE}:{n}_" for spec in REGISTRY.values() for n in spec.namespaces}


def similar_keys(key: str, limit: int = 3) -> list[str]:
    """Known keys that ``key`` probably meant: a case-insensitive match first, then close spellings."""
    keys = list(_table())
    folded = key.casefold()
    exact = [k for k in keys if k.casefold() == folded and k != key]
    if exact:
        return exact[:limit]
    by_fold = {k.casefold(): k for k in keys}
    return [by_fold[k] for k in difflib.get_close_matches(folded, list(by_fold), n=limit, cutoff=0.75)]


def similar_namespace(namespace: str) -> str | None:
    """The known namespace ``namespace`` probably meant (``sentinelone`` → ``sentinelOne``), if any."""
    spaces = {n.casefold(): n for n in known_namespaces()}
    if namespace.casefold() in spaces:
        return spaces[namespace.casefold()]
    close = difflib.get_close_matches(namespace.casefold(), list(spaces), n=1, cutoff=0.75)
    return spaces[close[0]] if close else None


def value_hint(key: str, value: str) -> str | None:
    """The allowed value of ``key`` that ``value`` was probably meant to be (``None`` if no good guess).

    The attribute's own ``hints`` win; then a case/spacing-insensitive match; then ``difflib``.
    """
    attribute = known_attribute(key)
    if attribute is None or not attribute.values or value in attribute.values:
        return None
    folded = _fold(value)
    hinted = _hints().get(key, {}).get(folded)
    if hinted is not None and hinted != value:
        return hinted
    for allowed in attribute.values:
        if _fold(allowed) == folded:
            return allowed
    close = difflib.get_close_matches(value, list(attribute.values), n=1, cutoff=0.6)
    return close[0] if close else None
