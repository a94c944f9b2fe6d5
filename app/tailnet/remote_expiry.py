"""Expiries accessbot set on a real tailnet's attributes (``RemoteExpiryRow``), so their passing is audited.

Tailscale drops an expired attribute silently; the Tailscale adapter remembers each expiry it set and audits
its passing (actor ``system:expiry``, at the expiry time) when it next looks: on a sweep, or before writing
the same attribute again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.db import audit
from app.db.audit import AuditAction
from app.db.tables import RemoteExpiryRow
from app.tailnet.models import AttributeValue

EXPIRY_ACTOR = "system:expiry"


def remember(session: Session, device_id: str, key: str, value: AttributeValue, expiry: datetime) -> None:
    """Upsert the expiry accessbot set on ``device_id``/``key``."""
    dialect = session.get_bind().dialect.name
    values = {"device_id": device_id, "key": key, "value": value, "expires_at": expiry}
    if dialect in ("postgresql", "sqlite"):  # each dialect's own INSERT ... ON CONFLICT construct
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(RemoteExpiryRow).values(**values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["device_id", "key"],
                set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
            )
        )
    else:
        session.merge(RemoteExpiryRow(**values))


def forget(session: Session, device_id: str, key: str) -> None:
    """Drop the remembered expiry of ``device_id``/``key`` (the attribute was rewritten or deleted)."""
    session.execute(delete(RemoteExpiryRow).where(RemoteExpiryRow.device_id == device_id, RemoteExpiryRow.key == key))


def expire(session: Session, now: datetime, device_id: str | None = None, key: str | None = None) -> int:
    """Delete passed expiries (optionally of one attribute), auditing each at its expiry time; return how many."""
    stmt = delete(RemoteExpiryRow).where(RemoteExpiryRow.expires_at <= now)
    if device_id is not None and key is not None:
        stmt = stmt.where(RemoteExpiryRow.device_id == device_id, RemoteExpiryRow.key == key)
    gone = session.execute(
        stmt.returning(
            RemoteExpiryRow.device_id,
            RemoteExpiryRow.key,
            RemoteExpiryRow.value,
            RemoteExpiryRow.expires_at,
        )
    ).all()
    for gone_device, gone_key, value, expires_at in sorted(gone, key=lambda g: (g[3], g[0], g[1])):
        audit.record(
            session,
            at=expires_at,
            actor=EXPIRY_ACTOR,
            action=AuditAction.UPDATE_NODE_ATTRIBUTE,
            target=audit.attribute_target(gone_device, gone_key),
            old=value,
            new=None,
            details={"device_id": gone_device, "key": gone_key, "change": "expire"},
        )
    return len(gone)
