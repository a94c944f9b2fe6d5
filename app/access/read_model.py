"""The read model of an access request, and the audit and notification vocabulary of the flow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from app.db.tables.access import AccessRequestRow, RequestStatus


class AccessAudit(StrEnum):
    """Audit action names of the access flow."""

    REQUESTED = "Access requested"
    APPROVED = "Access approved"
    DENIED = "Access denied"
    GRANTED = "Access granted"
    GRANT_FAILED = "Access grant failed"
    REVOKED = "Access revoked"
    EXPIRED = "Access expired"
    REQUEST_EXPIRED = "Access request expired"
    CANCELLED = "Access request cancelled"
    SCHEDULED = "Access scheduled"
    START_MISSED = "Scheduled access missed"
    BREAK_GLASS = "Access break-glass"
    BREAK_GLASS_REVIEWED = "Break-glass reviewed"
    AUTO_APPROVED = "Access auto-approved"


class Notice(StrEnum):
    """Outbox kinds: what people must be told."""

    REQUESTED = "requested"
    VOTE_RECORDED = "vote_recorded"
    GRANTED = "granted"
    FAILED = "failed"
    DENIED = "denied"
    REVOKED = "revoked"
    REQUEST_EXPIRED = "request_expired"
    REMINDER = "reminder"
    ENDED = "ended"
    CANCELLED = "cancelled"
    SCHEDULED = "scheduled"
    STARTS_SOON = "starts_soon"
    START_MISSED = "start_missed"
    BREAK_GLASS_REVIEWED = "break_glass_reviewed"
    BREAK_GLASS_REVIEW_DUE = "break_glass_review_due"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A snapshot of one request as stored."""

    id: int
    status: RequestStatus
    requester_id: str
    requester_email: str | None
    profile_id: str
    attribute: str
    value: Any
    approvals_required: int
    device_id: str
    device_name: str
    device_owner: str
    device_os: str
    duration: timedelta
    reason: str
    approver_ids: tuple[str, ...]
    created_at: datetime
    timeout_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    deny_reason: str | None
    granted_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None
    ended_note: str | None
    last_error: str | None
    extends_request_id: int | None
    approvals: tuple[str, ...] = ()
    starts_at: datetime | None = None
    """Scheduled access: when the attribute is written (``None``: as soon as it is approved)."""
    break_glass: bool = False
    """Granted by its requester without approval; an approver reviews it afterwards."""
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    requester_login: str | None = None
    """The requester's Tailscale login when they asked (identity binding; ``None`` for older requests)."""
    auto_approval: dict[str, Any] | None = None
    """Approved by an on-call schedule (``OnCallMatch.as_json``: provider, schedule, window); ``None`` otherwise."""
    origin: str = "slack"
    """Where it was asked for: ``slack``, ``cli`` or ``api`` (then ``request_client_id`` says which client)."""
    request_client_id: str | None = None

    @classmethod
    def from_row(cls, row: AccessRequestRow, approvals: tuple[str, ...] = ()) -> AccessRequest:
        """Snapshot an ORM row (with the ids of those who approved so far)."""
        return cls(
            id=row.id,
            status=RequestStatus(row.status),
            requester_id=row.requester_id,
            requester_email=row.requester_email,
            profile_id=row.profile_id,
            attribute=row.attribute,
            value=row.value,
            approvals_required=row.approvals_required,
            device_id=row.device_id,
            device_name=row.device_name,
            device_owner=row.device_owner,
            device_os=row.device_os,
            duration=timedelta(seconds=row.duration_seconds),
            reason=row.reason,
            approver_ids=tuple(row.approver_ids or ()),
            created_at=row.created_at,
            timeout_at=row.timeout_at,
            decided_at=row.decided_at,
            decided_by=row.decided_by,
            deny_reason=row.deny_reason,
            granted_at=row.granted_at,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
            ended_by=row.ended_by,
            ended_note=row.ended_note,
            last_error=row.last_error,
            extends_request_id=row.extends_request_id,
            approvals=approvals,
            break_glass=bool(row.break_glass),
            reviewed_at=row.reviewed_at,
            reviewed_by=row.reviewed_by,
            requester_login=row.requester_login,
            auto_approval=dict(row.auto_approval) if row.auto_approval else None,
            starts_at=row.starts_at,
            origin=row.origin or "slack",
            request_client_id=row.request_client_id,
        )

    @property
    def window_end(self) -> datetime | None:
        """A scheduled request's end: its start plus its duration (``None`` when it starts on approval)."""
        return None if self.starts_at is None else self.starts_at + self.duration

    @property
    def requester_label(self) -> str:
        """Email if known, else the user id."""
        return self.requester_email or self.requester_id
