"""ORM rows of the access flow: requests, approval votes, posted chat messages and the notification outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db.tables.base import Base
from app.db.types import UTCDateTime


class RequestStatus(StrEnum):
    """Where a request stands. ``granting`` is held only while the attribute write is in flight."""

    PENDING = "pending"
    SCHEDULED = "scheduled"  # approved; the attribute is written at ``starts_at``
    GRANTING = "granting"
    GRANTED = "granted"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"  # nobody reviewed it in time
    REVOKED = "revoked"
    ENDED = "ended"  # the grant ran out
    CANCELLED = "cancelled"  # withdrawn by the requester before it was granted


OPEN_STATUSES = (RequestStatus.PENDING, RequestStatus.SCHEDULED, RequestStatus.GRANTING, RequestStatus.FAILED)


class AccessRequestRow(Base):
    """One request for access; profile facts are copied in so a config change cannot alter it."""

    __tablename__ = "access_requests"
    __table_args__ = (
        Index("ix_access_requests_status_expires", "status", "expires_at"),
        Index("ix_access_requests_status_starts", "status", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    requester_id: Mapped[str] = mapped_column(String(32), index=True)
    requester_email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    attribute: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)
    approvals_required: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str] = mapped_column(String(64))
    device_name: Mapped[str] = mapped_column(String(255))
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    device_os: Mapped[str] = mapped_column(String(64), default="")
    duration_seconds: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    approver_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timeout_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    deny_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminder_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ended_note: Mapped[str | None] = mapped_column(String(255), nullable=True)
    granting_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    extends_request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """Scheduled access: the attribute is written at this time (``None``: as soon as it is approved)."""
    origin: Mapped[str] = mapped_column(String(16), default="slack", server_default="slack")
    """Where the request came from: ``slack``, ``cli`` or ``api``."""
    request_client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The request client (HTTP API credential) that made it, for ``origin == "api"``."""
    requester_login: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """The requester's Tailscale login when the request was made (identity binding)."""
    auto_approval: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """On-call auto-approval: provider, schedule and the on-call window that approved it."""
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    review_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class VoteRow(Base):
    """One approver's approval of one request (at most one per approver: a database-level guard)."""

    __tablename__ = "access_votes"
    __table_args__ = (UniqueConstraint("request_id", "approver_id", name="uq_access_votes_request_approver"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), index=True)
    approver_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class PostedMessageRow(Base):
    """A chat message posted about a request, so every copy can be updated when the request changes."""

    __tablename__ = "access_messages"
    __table_args__ = (UniqueConstraint("channel", "ts", name="uq_access_messages_channel_ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), index=True)
    audience: Mapped[str] = mapped_column(String(64))  # "approver:<user id>", "requester", "channel"
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(32))


class NotificationRow(Base):
    """Outbox: something people must be told, written in the same transaction as the state change."""

    __tablename__ = "access_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ChannelProblemRow(Base):
    """A notify channel accessbot cannot post to, and why: one row per (channel, Slack error).

    The row makes "tell the admins once" hold across restarts and processes: whoever sets ``alerted_at``
    queues the alert. A later successful post to the channel sets ``resolved_at``; a new failure reopens it.
    """

    __tablename__ = "access_channel_problems"
    __table_args__ = (UniqueConstraint("channel", "error", name="uq_access_channel_problems_channel_error"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(128))  # as configured in the profile's notify_channel
    error: Mapped[str] = mapped_column(String(64))  # Slack's error code, e.g. not_in_channel
    profile_id: Mapped[str] = mapped_column(String(64))  # the profile whose post failed last
    last_request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurrences: Mapped[int] = mapped_column(Integer, default=0)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UserLinkRow(Base):
    """Identity binding: the Tailscale login of a Slack user whose email differs from it (``accessbot users link``)."""

    __tablename__ = "user_links"

    slack_user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    login: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))


class RequestClientRow(Base):
    """A credential of the request API (scripts, runbooks, agents): it can request access, never approve.

    Only a hash of its secret is kept. ``requester_id`` pins the Slack user it requests as (``None``: each request
    names its requester); ``profiles`` limits what it may request (empty: every profile).
    """

    __tablename__ = "request_clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(255), default="")
    requester_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    profiles: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DriftFindingRow(Base):
    """A device holding a profile's attribute with no active grant behind it (one open finding per device and key).

    ``reported_at`` makes "tell the admins once" hold across processes; ``resolved_at`` and ``resolution``
    (``removed``, ``granted``, ``gone``) close it, and a later recurrence reopens the row.
    """

    __tablename__ = "drift_findings"
    __table_args__ = (UniqueConstraint("device_id", "attribute", name="uq_drift_findings_device_attribute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    device_name: Mapped[str] = mapped_column(String(255), default="")
    attribute: Mapped[str] = mapped_column(String(128))
    value: Mapped[Any] = mapped_column(JSON)
    profile_id: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(32), nullable=True)
