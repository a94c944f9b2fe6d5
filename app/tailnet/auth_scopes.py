"""Scopes of the built-in HTTP API and who holds them: the scope names, what implies what, and ``Principal``.

An API key carries every scope; an OAuth client's token carries the scopes it was issued with. Each route
names the one scope it needs and ``Principal.require`` is the single check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.tailnet.errors import InvalidRequest, PermissionDenied
from app.tailnet.models import Actor

ALL, ALL_READ = "all", "all:read"
DEVICES_READ = "devices:core:read"
ATTRIBUTES_READ = "devices:posture_attributes:read"
ATTRIBUTES_WRITE = "devices:posture_attributes"
SCOPES = (ALL, ALL_READ, "devices:core", DEVICES_READ, ATTRIBUTES_WRITE, ATTRIBUTES_READ)
"""The scopes this API knows; a ``:read`` scope is implied by its write scope and by ``all:read``."""
DEFAULT_CLIENT_SCOPES = (DEVICES_READ, ATTRIBUTES_WRITE)
"""What accessbot itself needs from an OAuth client: read devices, write posture attributes."""


def normalize_scopes(requested: Iterable[str]) -> tuple[str, ...]:
    """Split on spaces and commas, drop duplicates, and refuse unknown scopes (``InvalidRequest``)."""
    out: list[str] = []
    for item in requested:
        for scope in item.replace(",", " ").split():
            if scope not in SCOPES:
                raise InvalidRequest(f"unknown scope {scope!r}; known scopes: {', '.join(SCOPES)}")
            if scope not in out:
                out.append(scope)
    return tuple(out)


def scope_allows(granted: Iterable[str], needed: str) -> bool:
    """Whether ``granted`` covers ``needed``: exact, ``all``, or a ``:read`` implied by write/``all:read``."""
    granted = set(granted)
    if ALL in granted or needed in granted:
        return True
    if needed.endswith(":read"):
        return ALL_READ in granted or needed.removesuffix(":read") in granted
    return False


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made an API request: an API key (full access) or an OAuth client's token (its scopes)."""

    kind: str  # "apikey" or "oauth"
    id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> Actor:
        """The audit actor of writes made with this credential; it may write ``custom:`` only."""
        return Actor(f"{self.kind}:{self.id}")

    def require(self, scope: str) -> None:
        """``PermissionDenied`` naming ``scope`` unless this credential carries it."""
        if not scope_allows(self.scopes, scope):
            also = f" (or {scope.removesuffix(':read')})" if scope.endswith(":read") else ""
            raise PermissionDenied(f"this token lacks the {scope} scope{also} needed for this request")
