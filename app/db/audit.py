"""The append-only audit log: record events and query them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.timefmt import format_rfc3339
from app.db import Database, bulk
from app.db.tables import AuditEventRow


class AuditAction(StrEnum):
    """Names of audit actions (as Tailscale's own audit log spells the shared ones)."""

    UPDATE_NODE_ATTRIBUTE = "Update node attribute"
    CREATE_API_KEY = "Create API key"
    REVOKE_API_KEY = "Revoke API key"
    CREATE_OAUTH_CLIENT = "Create OAuth client"
    REVOKE_OAUTH_CLIENT = "Revoke OAuth client"
    ADD_DEVICE = "Add device"
    IMPORT_DEVICES = "Import devices"
    REMOVE_DEVICE = "Remove device"
    CREATE_POSTURE_INTEGRATION = "Create posture integration"
    UPDATE_POSTURE_INTEGRATION = "Update posture integration"
    REFUSED_COMMAND = "Refused posture command"
    REMOVE_POSTURE_INTEGRATION = "Removed posture integration"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event as read back."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    old_value: Any = None
    new_value: Any = None
    expiry: datetime | None = None
    comment: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in RFC 3339)."""
        return {
            "id": self.id,
            "time": format_rfc3339(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "old": self.old_value,
            "new": self.new_value,
            "expiry": format_rfc3339(self.expiry) if self.expiry else None,
            "comment": self.comment,
            "details": self.details,
        }


def event(
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    old: Any = None,
    new: Any = None,
    expiry: datetime | None = None,
    comment: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one audit event (for ``record`` and ``record_many``)."""
    return {
        "at": at,
        "actor": actor,
        "action": str(action),
        "target": target,
        "old_value": old,
        "new_value": new,
        "expiry": expiry,
        "comment": comment,
        "details": details or {},
    }


def record(session: Session, **fields: Any) -> None:
    """Append one event in the caller's transaction (so it commits or rolls back with the change).

    Takes the keyword arguments of ``event``.
    """
    session.add(AuditEventRow(**event(**fields)))


def record_many(session: Session, events: list[dict[str, Any]]) -> None:
    """Append many events (``event`` dicts) with one bulk INSERT in the caller's transaction, in order.

    Through the Core table, without the ORM's per-row bookkeeping (a sync writes 100k+): executemany, or COPY on
    PostgreSQL.
    """
    bulk.insert_rows(session, AuditEventRow.__table__, events)


def record_refusal(db: Database, *, at: datetime, actor: str, target: str, details: dict[str, Any]) -> None:
    """Audit, in its own transaction, an attempt someone was not allowed to make."""
    with db.session() as session:
        record(session, at=at, actor=actor, action=AuditAction.REFUSED_COMMAND, target=target, details=details)


def attribute_target(device_id: str, key: str) -> str:
    """The audit target of an attribute: ``device/<id>/attributes/<key>``."""
    return f"device/{device_id}/attributes/{key}"


def query(
    session: Session,
    *,
    since: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Events in time order, filtered by time, action (any case), actor and target; ``limit`` keeps the newest."""
    stmt = select(AuditEventRow).order_by(AuditEventRow.at, AuditEventRow.id)
    if since is not None:
        stmt = stmt.where(AuditEventRow.at >= since)
    if action is not None:
        stmt = stmt.where(func.lower(AuditEventRow.action) == action.lower())
    if actor is not None:
        stmt = stmt.where(AuditEventRow.actor == actor)
    if target is not None:
        stmt = stmt.where(AuditEventRow.target == target)
    if limit is not None:  # the newest ``limit`` events, still in time order
        newest = stmt.order_by(None).order_by(AuditEventRow.at.desc(), AuditEventRow.id.desc()).limit(limit)
        stmt = select(AuditEventRow).where(AuditEventRow.id.in_(newest.with_only_columns(AuditEventRow.id)))
        stmt = stmt.order_by(AuditEventRow.at, AuditEventRow.id)
    return [
        AuditEvent(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            old_value=row.old_value,
            new_value=row.new_value,
            expiry=row.expiry,
            comment=row.comment,
            details=dict(row.details or {}),
        )
        for row in session.scalars(stmt)
    ]
