"""Property-based tests (hypothesis) of the attribute rules and the built-in HTTP API.

Profiles: ``dev`` (the default) and ``ci`` (chosen when ``CI`` is set, or by ``HYPOTHESIS_PROFILE=ci``):
derandomized so a CI run is reproducible, no example database, the failing example printed as a blob.
Each test bounds its own ``max_examples`` and ``deadline`` so the package runs well under a minute.

This module also holds what both test modules share: the README's attribute rules written out independently of
``app.tailnet.rules`` (so a bug there cannot hide itself) and a snapshot of everything the store holds.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, settings
from sqlalchemy import func, select

from app.db import Database
from app.db.tables import AttributeKeyRow, AttributeRow, AuditEventRow, DeviceRow

settings.register_profile("dev", print_blob=True)
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

MAX_SAFE_INTEGER = 2**53 - 1
TRUSTED_NAMESPACES = frozenset({"huntress", "sentinelOne"})
_KEY = re.compile(r"([A-Za-z0-9_]+):[A-Za-z0-9_:]+")
_CUSTOM_STRING = re.compile(r"[A-Za-z0-9_.]{1,50}")
ZERO_INSTANT = datetime(1, 1, 1, tzinfo=UTC)


def facts_problems(
    key: Any,
    value: Any,
    expiry: datetime | None,
    now: datetime,
    namespaces: frozenset[str] = frozenset({"custom"}),
) -> list[str]:
    """What a stored attribute breaks of the README's attribute rule table (empty when it is fine).

    ``namespaces`` are the namespaces the writer may use (``custom`` for people and API clients).
    """
    problems: list[str] = []
    if not isinstance(key, str) or len(key) > 50 or not _KEY.fullmatch(key):
        problems.append(f"key {key!r}: at most 50 letters, digits, '_' and ':' as namespace:name")
        namespace = None
    else:
        namespace = key.split(":", 1)[0]
        if namespace in ("node", "ip") or namespace not in namespaces:
            problems.append(f"key {key!r}: namespace {namespace!r} is not writable here")
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            problems.append(f"number {value.bit_length()} bits long: beyond 2^53 - 1")
    elif isinstance(value, str):
        if namespace == "custom" or namespace is None:
            if not _CUSTOM_STRING.fullmatch(value):
                problems.append(f"string {value!r}: 1-50 letters, digits, '_' and '.'")
        elif not value or len(value) > 100 or not value.isprintable():
            problems.append(f"vendor string {value!r}: 1-100 printable characters")
    else:
        problems.append(f"value {shown(value)}: not a string, an integer or a boolean")
    if expiry is not None and (expiry.tzinfo is None or expiry <= now):
        problems.append(f"expiry {expiry!r} is not in the future of {now!r}")
    return problems


def shown(value: Any) -> str:
    """``repr`` that survives integers too long to print (Python refuses more than 4300 digits)."""
    try:
        return repr(value)[:200]
    except ValueError:
        return f"<{type(value).__name__} too large to print>"


def store_snapshot(db: Database) -> dict[str, Any]:
    """Every attribute row and key row as stored, plus how many audit events there are."""
    with db.session() as session:
        attributes = sorted(
            (
                row.device_id,
                row.key.key,
                repr(row.value),
                row.expires_at.isoformat() if row.expires_at else None,
                row.comment,
                row.updated_by,
            )
            for row in session.scalars(select(AttributeRow))
        )
        keys = sorted((k.key, k.key_folded, k.value_type) for k in session.scalars(select(AttributeKeyRow)))
        audit_count = session.scalar(select(func.count()).select_from(AuditEventRow))
    return {"attributes": attributes, "keys": keys, "audit": audit_count}


def store_problems(db: Database, now: datetime, namespaces: frozenset[str]) -> list[str]:
    """Everything wrong with what the store holds: each live value against the attribute rules, and the key registry.

    Registry: a key row per case-folded spelling, every value of a key of its one type, and no key row that
    no device holds (else its type would stay fixed for nothing).
    """
    problems: list[str] = []
    kinds = {bool: "boolean", int: "number", str: "string"}
    with db.session() as session:
        devices = set(session.scalars(select(DeviceRow.id)))
        held: dict[int, int] = {}
        for row in session.scalars(select(AttributeRow)):
            key_row = row.key
            held[key_row.id] = held.get(key_row.id, 0) + 1
            if row.device_id not in devices:
                problems.append(f"{key_row.key} on unknown device {row.device_id}")
            kind = kinds.get(type(row.value))
            if kind != key_row.value_type:
                problems.append(f"{key_row.key}={row.value!r} is a {kind}, the key holds {key_row.value_type}s")
            if row.expires_at is not None and row.expires_at.tzinfo is None:
                problems.append(f"{key_row.key} expiry {row.expires_at!r} has no time zone")
            live = row.expires_at is None or _aware(row.expires_at) > now
            if live:
                problems.extend(facts_problems(key_row.key, row.value, None, now, namespaces))
            if row.comment is not None and (len(row.comment) > 200 or "\x00" in row.comment):
                problems.append(f"{key_row.key} comment {row.comment!r} breaks the comment rule")
        folded: set[str] = set()
        for key_row in session.scalars(select(AttributeKeyRow)):
            if key_row.key_folded != key_row.key.casefold():
                problems.append(f"key row {key_row.key!r} folded as {key_row.key_folded!r}")
            if key_row.key_folded in folded:
                problems.append(f"two key rows fold to {key_row.key_folded!r}")
            folded.add(key_row.key_folded)
            if key_row.id not in held:
                problems.append(f"key row {key_row.key!r} is held by no device")
    return problems


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
