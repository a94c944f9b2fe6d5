"""Expiry of the built-in tailnet's attributes: purging expired values and dropping keys nobody holds.

An expired value is deleted and audited at its expiry time (actor ``system:expiry``), whether the sweep finds
it or a writer of the same key does; a key left without values leaves the registry, so its type can be
chosen anew.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import audit
from app.db.audit import AuditAction
from app.db.tables import AttributeKeyRow, AttributeRow

EXPIRY_ACTOR = "system:expiry"


def purge(session: Session, now: datetime, key_id: int | None = None) -> int:
    """Delete expired values (of one key, or all), auditing each at its expiry time; return how many."""
    stmt = delete(AttributeRow).where(AttributeRow.expires_at <= now)
    if key_id is not None:
        stmt = stmt.where(AttributeRow.key_id == key_id)
    gone = session.execute(
        stmt.returning(AttributeRow.device_id, AttributeRow.key_id, AttributeRow.value, AttributeRow.expires_at)
    ).all()
    if not gone:
        return 0
    keys = {
        row.id: row.key
        for row in session.scalars(select(AttributeKeyRow).where(AttributeKeyRow.id.in_({g[1] for g in gone})))
    }
    for device_id, gone_key_id, value, expires_at in sorted(gone, key=lambda g: g[3]):
        audit.record(
            session,
            at=expires_at,
            actor=EXPIRY_ACTOR,
            action=AuditAction.UPDATE_NODE_ATTRIBUTE,
            target=audit.attribute_target(device_id, keys[gone_key_id]),
            old=value,
            new=None,
            details={"device_id": device_id, "key": keys[gone_key_id], "change": "expire"},
        )
    for gone_key_id in keys:
        collect_key(session, gone_key_id)
    return len(gone)


def collect_key(session: Session, key_id: int) -> None:
    """Drop a key from the registry once no device holds it (so its type can be chosen anew)."""
    session.flush()
    if session.scalar(select(AttributeRow.id).where(AttributeRow.key_id == key_id).limit(1)) is not None:
        return
    try:
        with session.begin_nested():
            session.execute(delete(AttributeKeyRow).where(AttributeKeyRow.id == key_id))
    except IntegrityError:
        return  # a concurrent writer just used the key; keep it
