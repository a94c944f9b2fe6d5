"""Break-glass: a requester grants a break-glass profile to themselves at once, and an approver reviews it after.

A break-glass request is stored like any other, then moved straight to ``granting`` by its own transition
(audited ``Access break-glass`` with the reason); the attribute is written as for an approval and announced only
after the write, to every approver of the profile (DMs with "Mark reviewed"), the notify channel and the
requester. The review is a conditional update (``reviewed_at IS NULL``), so exactly one approver's click counts;
unreviewed grants are listed for approvers and admins and reminded once per period (``review_reminded_at``).
Neither a review nor a reminder changes the request's status, so they update their columns here, auditing and
queuing their notice in the same transaction as ``transitions.move`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from app.access import transitions
from app.access.errors import AlreadyDecided, NotAllowed
from app.access.identity import same_login
from app.access.queries import load_request, snapshot
from app.access.read_model import AccessAudit, AccessRequest, Notice
from app.config.profiles import Profile
from app.core import metrics
from app.core.timefmt import format_duration
from app.db import Database
from app.db.tables.access import AccessRequestRow, RequestStatus

FIELD = "break_glass"
"""The request form's field (and modal block id) of the break-glass choice."""
REVIEWABLE = frozenset({RequestStatus.GRANTED, RequestStatus.FAILED, RequestStatus.ENDED, RequestStatus.REVOKED})
"""Statuses a break-glass request can be reviewed in: the write was made (or tried); ``granting`` is still under way."""
LISTED = 20
"""Unreviewed break-glass requests listed at most (``/posture status``, App Home)."""


def submission_errors(
    profile: Profile | None, errors: dict[str, str], *, duration: timedelta | None, reason: str
) -> dict[str, str]:
    """A request form's errors (``errors``, from the ordinary checks) as they stand for a break-glass request.

    No approver has to be chosen (every approver of the profile is told); the duration is capped by
    ``break_glass_max_duration`` and the reason must have ``break_glass_min_reason`` characters.
    """
    out = {field: message for field, message in errors.items() if field != "approver"}
    if profile is None:
        return out
    if not profile.break_glass:
        out[FIELD] = f"{profile.label()} has no break-glass; untick it to ask for approval."
        return out
    cap = profile.break_glass_cap
    if duration is not None and duration > cap and "duration" not in out:
        out["duration"] = (
            f"Break glass grants {profile.label()} for at most {format_duration(cap)}; choose a shorter duration, "
            "or untick break glass to ask for approval."
        )
    cleaned = reason.strip()
    if "reason" not in out and len(cleaned) < profile.break_glass_min_reason:
        out["reason"] = (
            f"Break glass needs a reason of at least {profile.break_glass_min_reason} characters (this one has "
            f"{len(cleaned)}): say what is broken and why it cannot wait for an approval."
        )
    return out


def start(session: Session, row: AccessRequestRow, *, at: datetime) -> int:
    """A new break-glass request (added and flushed ``pending``): straight to ``granting``, audited with the reason.

    Nothing is announced yet: the grant's result is (after the write), to the approvers, channel and requester.
    """
    values = {"break_glass": True, "decided_at": at, "decided_by": row.requester_id, "granting_since": at}
    moved = transitions.move_or_refuse(
        session,
        transitions.BREAK_GLASS,
        row.id,
        actor=row.requester_id,
        at=at,
        values=values,
        details={"reason": row.reason, "duration_seconds": row.duration_seconds},
    )
    metrics.access_requested(session)
    return moved.id


def review(
    session: Session,
    request_id: int,
    user_id: str,
    *,
    eligible: set[str],
    at: datetime,
    reviewer_login: str | None = None,
) -> AccessRequest:
    """``user_id`` marks a break-glass request reviewed: an approver of its profile, not its requester, once.

    ``eligible`` are the profile's approvers resolved now (never from the button); ``reviewer_login``, the
    reviewer's Tailscale login: equal to the requester's, it is the requester under another Slack account. Refuses
    with ``NotAllowed`` or ``AlreadyDecided`` (reviewed already, or still being granted).
    """
    row = load_request(session, request_id, lock=True)
    if not row.break_glass:
        raise NotAllowed(f"Request {request_id} was not a break-glass grant; there is nothing to review.")
    if user_id == row.requester_id or same_login(reviewer_login, row.requester_login or row.requester_email):
        raise NotAllowed("You cannot review your own break-glass access; another approver has to.")
    if user_id not in eligible:
        raise NotAllowed(f"Only the approvers of {row.profile_id} can review break-glass access to it.")
    if row.status not in REVIEWABLE:
        raise transitions.already_decided(request_id, row.status)
    result = session.execute(
        update(AccessRequestRow)
        .where(AccessRequestRow.id == request_id, AccessRequestRow.reviewed_at.is_(None))
        .values(reviewed_at=at, reviewed_by=user_id)
        .execution_options(synchronize_session=False)
    )
    row = load_request(session, request_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise AlreadyDecided(f"Request {request_id} was already reviewed by <@{row.reviewed_by}>.")
    transitions.record(
        session, row, actor=user_id, action=AccessAudit.BREAK_GLASS_REVIEWED, at=at, details={"reason": row.reason}
    )
    transitions.notify(session, row, Notice.BREAK_GLASS_REVIEWED, at=at, payload={"by": user_id})
    return snapshot(session, row)


def _unreviewed() -> tuple[ColumnElement[bool], ...]:
    return (
        AccessRequestRow.break_glass.is_(True),
        AccessRequestRow.reviewed_at.is_(None),
        AccessRequestRow.status.in_(REVIEWABLE),
    )


def unreviewed(db: Database, *, limit: int = LISTED) -> tuple[list[AccessRequest], int]:
    """The oldest unreviewed break-glass requests (at most ``limit``) and how many there are in all."""
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(AccessRequestRow).where(*_unreviewed())) or 0
        rows = session.scalars(
            select(AccessRequestRow)
            .where(*_unreviewed())
            .order_by(AccessRequestRow.created_at, AccessRequestRow.id)
            .limit(limit)
        )
        return [snapshot(session, row) for row in rows], total


def reviewable_by(requests: Iterable[AccessRequest], user_id: str) -> list[AccessRequest]:
    """Of ``requests``, those ``user_id`` was told about as an approver and may review (not their own)."""
    return [r for r in requests if user_id in r.approver_ids and user_id != r.requester_id]


def remind_unreviewed(db: Database, *, now: datetime, every: timedelta) -> int:
    """Remind the approvers of each break-glass request unreviewed ``every`` after its grant, once per ``every``.

    ``review_reminded_at`` makes it once per period across processes (a conditional update: one winner).
    """
    due_before = now - every
    due = (
        *_unreviewed(),
        AccessRequestRow.decided_at <= due_before,
        or_(AccessRequestRow.review_reminded_at.is_(None), AccessRequestRow.review_reminded_at <= due_before),
    )
    with db.session() as session:
        ids = list(session.scalars(select(AccessRequestRow.id).where(*due).order_by(AccessRequestRow.id)))
    reminded = 0
    for request_id in ids:
        with db.session() as session:
            result = session.execute(
                update(AccessRequestRow)
                .where(AccessRequestRow.id == request_id, *due)
                .values(review_reminded_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                continue  # reviewed meanwhile, or reminded by another process
            row = load_request(session, request_id)
            transitions.notify(session, row, Notice.BREAK_GLASS_REVIEW_DUE, at=now)
            reminded += 1
    return reminded
