"""Checks of device fields an admin types or imports into the built-in tailnet, each with one clear message.

The built-in store holds what a Tailscale tailnet would: owners are login emails (``alice@example.com``, or
``name@github`` for a GitHub login, as Tailscale reports them), addresses are Tailscale addresses (IPv4 in
100.64.0.0/10, IPv6 in fd7a:115c:a1e0::/48), tags are ``tag:name``, and the OS is one Tailscale reports
(``node:os`` values). The Tailscale adapter never runs these: the real tailnet is the truth there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from app.tailnet.errors import InvalidRequest
from app.tailnet.node_attributes import node_os

KNOWN_OS = ("linux", "windows", "macos", "ios", "android", "freebsd", "openbsd", "illumos", "js")
"""Tailscale's ``node:os`` values; a device's ``os`` must fold to one of them (``macOS`` → ``macos``)."""

TAILSCALE_V4 = ipaddress.ip_network("100.64.0.0/10")
TAILSCALE_V6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_TAG = re.compile(r"tag:[A-Za-z][A-Za-z0-9-]*")


def check_user(user: Any) -> str:
    """The owner's login email (for a tagged device, its creator's); else ``InvalidRequest``."""
    if user is None:
        raise InvalidRequest("user is null: give the owner's login email (for a tagged device, its creator's)")
    if not isinstance(user, str) or not _EMAIL.fullmatch(user.strip()):
        raise InvalidRequest(f"user {user!r} is not an email address: give the owner's login email")
    return user.strip()


def check_address(address: Any) -> str:
    """A Tailscale IPv4 (100.64.0.0/10) or IPv6 (fd7a:115c:a1e0::/48) address, normalised; else ``InvalidRequest``."""
    try:
        parsed = ipaddress.ip_address(address.strip() if isinstance(address, str) else address)
    except (ValueError, TypeError):
        raise InvalidRequest(f"address {address!r} is not an IPv4 or IPv6 address") from None
    if parsed not in TAILSCALE_V4 and parsed not in TAILSCALE_V6:
        raise InvalidRequest(
            f"address {address!r} is not a Tailscale address: IPv4 in {TAILSCALE_V4}, IPv6 in {TAILSCALE_V6}"
        )
    return str(parsed)


def check_addresses(addresses: Any) -> tuple[str, ...]:
    """A list of Tailscale addresses (a single string is refused: ``addresses`` is a list)."""
    if addresses is None:
        return ()
    if isinstance(addresses, str) or not isinstance(addresses, list | tuple):
        raise InvalidRequest(f"addresses must be a list of IP addresses, not {addresses!r}")
    return tuple(check_address(a) for a in addresses)


def check_tags(tags: Any) -> tuple[str, ...]:
    """Tags of the form ``tag:name`` (a letter, then letters, digits or dashes); a lone string is one tag."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list | tuple):
        raise InvalidRequest(f'tags must be a list such as ["tag:server"], not {tags!r}')
    bad = [t for t in tags if not isinstance(t, str) or not _TAG.fullmatch(t)]
    if bad:
        shown = ", ".join(repr(t) for t in bad)
        raise InvalidRequest(f"tags must look like tag:name (a letter, then letters, digits or -), got {shown}")
    return tuple(tags)


def check_os(os: Any) -> str:
    """An OS Tailscale reports (any spelling that folds to a ``node:os`` value), or empty; else ``InvalidRequest``."""
    if os is None or (isinstance(os, str) and not os.strip()):
        return ""
    if not isinstance(os, str) or node_os(os) not in KNOWN_OS:
        raise InvalidRequest(f"os {os!r} is not one Tailscale reports; use one of {', '.join(KNOWN_OS)}")
    return os.strip()


def check_import_item(item: Any) -> None:
    """Check one device of an import file (``InvalidRequest`` names the field); the shape is Tailscale's JSON."""
    if not isinstance(item, dict):
        raise InvalidRequest("a device must be a JSON object")
    if "user" in item:  # absent: an unowned record (stored as ""); present: an email, never null
        check_user(item["user"])
    check_addresses(item.get("addresses"))
    check_tags(item.get("tags"))
    check_os(item.get("os"))
    for field in ("name", "hostname"):
        value = item.get(field)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidRequest(f"{field} must be a non-empty string, not {value!r}")


def duplicate_names(names: Iterable[tuple[str, str]]) -> list[str]:
    """Names (``(id, name)`` pairs) held by more than one device, compared as DNS does (case-insensitively)."""
    holders: dict[str, set[str]] = {}
    shown: dict[str, str] = {}
    for device_id, name in names:
        folded = name.casefold()
        holders.setdefault(folded, set()).add(device_id)
        shown.setdefault(folded, name)
    return sorted(shown[folded] for folded, ids in holders.items() if len(ids) > 1)
