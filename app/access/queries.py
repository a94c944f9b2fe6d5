"""Queries of stored requests: one by id inside a command's transaction, and the lists of App Home and status
pages."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.access.errors import RequestNotFound
from app.access.read_model import AccessRequest
from app.db import Database
from app.db.tables.access import AccessRequestRow, RequestStatus, VoteRow

MAX_REQUEST_ID = 2**31 - 1
"""The largest id the id column holds (PostgreSQL ``integer``): beyond it there is no such request."""


def load_request(session: Session, request_id: int, *, lock: bool = False) -> AccessRequestRow:
    """The request's row as stored now (``lock``: ``SELECT ... FOR UPDATE``); ``RequestNotFound`` if none."""
    if not 0 < request_id <= MAX_REQUEST_ID:
        raise RequestNotFound(f"Request {request_id} does not exist.")
    row = session.get(AccessRequestRow, request_id, with_for_update=lock or None, populate_existing=True)
    if row is None:
        raise RequestNotFound(f"Request {request_id} does not exist.")
    return row


def approvals(session: Session, request_id: int) -> list[str]:
    """Who approved the request so far, in the order they did."""
    return list(
        session.scalars(select(VoteRow.approver_id).where(VoteRow.request_id == request_id).order_by(VoteRow.id))
    )


def snapshot(session: Session, row: AccessRequestRow) -> AccessRequest:
    """The read model of ``row`` with its approvals."""
    return AccessRequest.from_row(row, tuple(approvals(session, row.id)))


def count_requests(db: Database, status: RequestStatus) -> int:
    """How many requests are in ``status`` (for status pages and tests)."""
    with db.session() as session:
        return session.scalar(select(func.count()).where(AccessRequestRow.status == status)) or 0


def _load(db: Database, stmt: object) -> list[AccessRequest]:
    with db.session() as session:
        rows = list(session.scalars(stmt))  # type: ignore[call-overload]
        return [snapshot(session, row) for row in rows]


def active_grants(db: Database, user_id: str) -> list[AccessRequest]:
    """The user's granted, unexpired requests, soonest expiry first."""
    return _load(
        db,
        select(AccessRequestRow)
        .where(AccessRequestRow.requester_id == user_id, AccessRequestRow.status == RequestStatus.GRANTED)
        .order_by(AccessRequestRow.expires_at),
    )


def upcoming_grants(db: Database, user_id: str) -> list[AccessRequest]:
    """The user's scheduled requests (approved, written at their start), soonest start first."""
    return _load(
        db,
        select(AccessRequestRow)
        .where(AccessRequestRow.requester_id == user_id, AccessRequestRow.status == RequestStatus.SCHEDULED)
        .order_by(AccessRequestRow.starts_at),
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
