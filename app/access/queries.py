"""Read-side queries of the access flow (App Home and status pages)."""

from __future__ import annotations

from sqlalchemy import select

from app.access.read_model import AccessRequest
from app.access.tables import AccessRequestRow, RequestStatus, VoteRow
from app.db import Database


def _load(db: Database, stmt: object) -> list[AccessRequest]:
    with db.session() as session:
        rows = list(session.scalars(stmt))  # type: ignore[call-overload]
        out = []
        for row in rows:
            votes = tuple(
                session.scalars(select(VoteRow.approver_id).where(VoteRow.request_id == row.id).order_by(VoteRow.id))
            )
            out.append(AccessRequest.from_row(row, votes))
        return out


def active_grants(db: Database, user_id: str) -> list[AccessRequest]:
    """The user's granted, unexpired requests, soonest expiry first."""
    return _load(
        db,
        select(AccessRequestRow)
        .where(AccessRequestRow.requester_id == user_id, AccessRequestRow.status == RequestStatus.GRANTED)
        .order_by(AccessRequestRow.expires_at),
    )


def my_open_requests(db: Database, user_id: str) -> list[AccessRequest]:
    """The user's requests still waiting (pending, being granted, or failed and retryable)."""
    return _load(
        db,
        select(AccessRequestRow)
        .where(
            AccessRequestRow.requester_id == user_id,
            AccessRequestRow.status.in_([RequestStatus.PENDING, RequestStatus.GRANTING, RequestStatus.FAILED]),
        )
        .order_by(AccessRequestRow.created_at.desc())
        .limit(20),
    )


def awaiting_approver(db: Database, user_id: str, limit: int = 20) -> list[AccessRequest]:
    """Pending requests that asked ``user_id`` to approve and that they have not approved yet."""
    with db.session() as session:
        pending = list(
            session.scalars(
                select(AccessRequestRow)
                .where(AccessRequestRow.status == RequestStatus.PENDING)
                .order_by(AccessRequestRow.created_at)
            )
        )
        wanted = [r for r in pending if user_id in (r.approver_ids or [])]
        out = []
        for row in wanted:
            votes = tuple(session.scalars(select(VoteRow.approver_id).where(VoteRow.request_id == row.id)))
            if user_id not in votes:
                out.append(AccessRequest.from_row(row, votes))
            if len(out) >= limit:
                break
        return out
