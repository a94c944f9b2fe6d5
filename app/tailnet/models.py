"""Value objects of the tailnet layer: devices, attribute sets, writes and actors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.timefmt import format_rfc3339_nano

AttributeValue = str | int | bool
"""A posture attribute value: string, integer number or boolean."""

CUSTOM_NAMESPACE = "custom"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who writes: an audit actor id plus the attribute namespaces it may write.

    Outside writers (people, API clients) may write only ``custom:``; trusted internal writers such as
    the EDR sync are created with their own namespace, e.g. ``Actor("system:sync:huntress", {"huntress"})``.
    """

    id: str
    namespaces: frozenset[str] = frozenset({CUSTOM_NAMESPACE})

    @classmethod
    def system(cls, name: str, *namespaces: str) -> Actor:
        """A trusted internal writer ``system:<name>`` allowed the given namespaces (plus ``custom``)."""
        return cls(f"system:{name}", frozenset({CUSTOM_NAMESPACE, *namespaces}))


@dataclass(frozen=True, slots=True)
class Device:
    """A tailnet device, as both adapters report it."""

    id: str
    node_id: str
    name: str
    hostname: str
    user: str = ""
    os: str = ""
    tags: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    last_seen: datetime | None = None
    serial_numbers: tuple[str, ...] = ()
    posture_identity_disabled: bool = False
    client_version: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def short_name(self) -> str:
        """The first label of the MagicDNS name (``laptop`` for ``laptop.tail1234.ts.net``)."""
        return self.name.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class AttributeSet:
    """The attributes of one device and the expiries of those that have one."""

    attributes: dict[str, AttributeValue]
    expiries: dict[str, datetime]

    def to_api(self) -> dict[str, Any]:
        """The Tailscale API shape ``{"attributes": ..., "expiries": ...}``; expiries omitted if none."""
        out: dict[str, Any] = {"attributes": dict(self.attributes)}
        if self.expiries:
            out["expiries"] = {key: format_rfc3339_nano(when) for key, when in self.expiries.items()}
        return out


@dataclass(frozen=True, slots=True)
class AttributeWrite:
    """A value to set, with an optional expiry (``None`` = never expires)."""

    value: AttributeValue
    expiry: datetime | None = None


AttributeChanges = dict[str, dict[str, AttributeWrite | None]]
"""For ``set_many``: device id → key → write, or ``None`` to delete the key."""
