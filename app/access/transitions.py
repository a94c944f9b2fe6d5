"""The access state machine: the table of allowed status changes, and the one function that makes them.

``move`` is a conditional UPDATE (``WHERE status IN (the transition's sources)``), so of two processes racing to
move the same request exactly one wins; the winner writes the audit event and queues the outbox notification in
the same transaction, and the metrics count the outcome once that transaction commits (a rollback counts
nothing). The service (people's clicks) and the lifecycle jobs (the clock) both move requests only through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from app.access.errors import AlreadyDecided
from app.access.read_model import AccessAudit, Notice
from app.core import metrics
from app.db import audit
from app.db.tables.access import AccessRequestRow, NotificationRow, RequestStatus

_S = RequestStatus


@dataclass(frozen=True, slots=True)
class Transition:
    """One allowed change: from any of ``sources`` to ``target``, and what it audits, tells and counts."""

    name: str
    sources: frozenset[RequestStatus]
    target: RequestStatus
    audit: AccessAudit | None = None
    """The audit action written with the change (``None``: the caller audits, or nothing is audited)."""
    notice: Notice | None = None
    """The outbox notification queued with the change."""
    outcome: str | None = None
    """The ``outcome`` label of ``accessbot_access_grants_total`` the change counts under."""


def _t(
    name: str,
    sources: Iterable[RequestStatus],
    target: RequestStatus,
    *,
    audit: AccessAudit | None = None,
    notice: Notice | None = None,
    outcome: str | None = None,
) -> Transition:
    return Transition(name, frozenset(sources), target, audit, notice, outcome)


VOTE = _t("vote", [_S.PENDING], _S.PENDING, notice=Notice.VOTE_RECORDED)
"""An approval that is not yet enough (the approval audits itself: ``Access approved``)."""
APPROVE = _t("approve", [_S.PENDING], _S.GRANTING)
"""The deciding approval: the attribute write starts (audited by the approval, announced by its result)."""
DENY = _t("deny", [_S.PENDING], _S.DENIED, audit=AccessAudit.DENIED, notice=Notice.DENIED, outcome="denied")
EXPIRE_REQUEST = _t(
    "expire_request",
    [_S.PENDING],
    _S.EXPIRED,
    audit=AccessAudit.REQUEST_EXPIRED,
    notice=Notice.REQUEST_EXPIRED,
    outcome="request_expired",
)
"""Nobody reviewed the request in time."""
RETRY = _t("retry", [_S.FAILED], _S.GRANTING)
"""A failed grant is tried again (announced by its result)."""
GRANT = _t("grant", [_S.GRANTING], _S.GRANTED, audit=AccessAudit.GRANTED, notice=Notice.GRANTED, outcome="granted")
FAIL = _t("fail", [_S.GRANTING], _S.FAILED, audit=AccessAudit.GRANT_FAILED, notice=Notice.FAILED, outcome="failed")
REMIND = _t("remind", [_S.GRANTED], _S.GRANTED, notice=Notice.REMINDER)
"""The expiry reminder (the caller adds ``reminder_sent_at IS NULL`` so it is sent once)."""
REVOKE = _t("revoke", [_S.GRANTED], _S.REVOKED, audit=AccessAudit.REVOKED, notice=Notice.REVOKED, outcome="revoked")
END = _t("end", [_S.GRANTED], _S.ENDED, audit=AccessAudit.EXPIRED, notice=Notice.ENDED, outcome="expired")
"""The grant ran out."""
SUPERSEDE = _t("supersede", [_S.GRANTED], _S.ENDED)
"""An older grant of the same attribute on the same device ends quietly when an extension is granted."""
CANCEL = _t(
    "cancel",
    [_S.PENDING, _S.SCHEDULED],
    _S.CANCELLED,
    audit=AccessAudit.CANCELLED,
    notice=Notice.CANCELLED,
    outcome="cancelled",
)
"""Withdrawn before anything was written: by an operator (CLI) or the request client that made it (API)."""
SCHEDULE = _t(
    "schedule",
    [_S.PENDING],
    _S.SCHEDULED,
    audit=AccessAudit.SCHEDULED,
    notice=Notice.SCHEDULED,
    outcome="scheduled",
)
"""The deciding approval of a request whose start is ahead: written at ``starts_at`` (``app.access.scheduling``)."""
START = _t("start", [_S.SCHEDULED], _S.GRANTING)
"""A scheduled request's start came: the attribute write starts (announced by its result)."""
REMIND_START = _t("remind_start", [_S.SCHEDULED], _S.SCHEDULED, notice=Notice.STARTS_SOON)
"""The "starts soon" reminder (the caller adds ``reminder_sent_at IS NULL``; ``START`` clears it again)."""
UNSCHEDULE = _t(
    "unschedule", [_S.SCHEDULED], _S.REVOKED, audit=AccessAudit.REVOKED, notice=Notice.REVOKED, outcome="revoked"
)
"""Revoked before its start: nothing was written to the tailnet, so nothing is deleted."""
MISS_START = _t(
    "miss_start",
    [_S.SCHEDULED],
    _S.ENDED,
    audit=AccessAudit.START_MISSED,
    notice=Notice.START_MISSED,
    outcome="start_missed",
)
"""The whole window passed before its start was made (no scheduler ran): ends without writing."""
BREAK_GLASS = _t("break_glass", [_S.PENDING], _S.GRANTING, audit=AccessAudit.BREAK_GLASS)
"""The requester grants a break-glass profile to themselves: the write starts at once (announced by its result)."""
AUTO_APPROVE = _t("auto_approve", [_S.PENDING], _S.GRANTING, audit=AccessAudit.AUTO_APPROVED)
"""The requester is on call for the profile's ``auto_approve`` schedule: the write starts (``app.access.oncall``)."""
AUTO_SCHEDULE = _t(
    "auto_schedule",
    [_S.PENDING],
    _S.SCHEDULED,
    audit=AccessAudit.AUTO_APPROVED,
    notice=Notice.SCHEDULED,
    outcome="scheduled",
)
"""On-call auto-approval of a request whose start is ahead: scheduled like a normal deciding approval."""

TRANSITIONS: tuple[Transition, ...] = (
    VOTE,
    APPROVE,
    DENY,
    EXPIRE_REQUEST,
    RETRY,
    GRANT,
    FAIL,
    REMIND,
    REVOKE,
    END,
    SUPERSEDE,
    CANCEL,
    SCHEDULE,
    START,
    REMIND_START,
    UNSCHEDULE,
    MISS_START,
    BREAK_GLASS,
    AUTO_APPROVE,
    AUTO_SCHEDULE,
)
"""Every allowed change. A request is created ``pending`` by ``submitted`` (audited, announced, counted)."""

OUTCOMES: tuple[str, ...] = tuple(dict.fromkeys(t.outcome for t in TRANSITIONS if t.outcome))
"""The outcome labels, exported as zeros from the start (``Metrics.declare_outcomes``)."""

STATUS_WORDS = {
    _S.GRANTING: "is being granted right now",
    _S.GRANTED: "was already approved and granted",
    _S.FAILED: "was approved but the grant failed; use Retry",
    _S.DENIED: "was already denied",
    _S.EXPIRED: "expired before anyone reviewed it",
    _S.REVOKED: "was revoked",
    _S.ENDED: "has ended",
    _S.PENDING: "is still waiting for approval",
    _S.SCHEDULED: "was approved and is scheduled to start later",
    _S.CANCELLED: "was cancelled before it was granted",
}
"""How a request's status is told to someone whose action came too late."""


def allowed(source: RequestStatus, target: RequestStatus) -> bool:
    """Whether the table has a change from ``source`` to ``target``."""
    return any(source in t.sources and t.target == target for t in TRANSITIONS)


def already_decided(request_id: int, status: str) -> AlreadyDecided:
    """The refusal for an action that needed another status: says where the request stands now."""
    return AlreadyDecided(f"Request {request_id} {STATUS_WORDS[RequestStatus(status)]}.")


def move(
    session: Session,
    transition: Transition,
    request_id: int,
    *,
    actor: str,
    at: datetime,
    values: Mapping[str, object] | None = None,
    details: Mapping[str, object] | None = None,
    payload: Mapping[str, object] | None = None,
    only_if: Iterable[ColumnElement[bool]] = (),
) -> AccessRequestRow | None:
    """Make ``transition`` on the request if it is in one of the transition's sources (and ``only_if`` holds).

    Sets ``values`` besides the status, then in the same transaction audits (``details`` added to the event's),
    queues the notice (with ``payload``) and counts the outcome after commit. Returns the row as updated, or
    ``None`` when the request was not in a source status: someone else moved it first, or the table forbids it.
    """
    result = session.execute(
        update(AccessRequestRow)
        .where(AccessRequestRow.id == request_id, AccessRequestRow.status.in_(transition.sources), *only_if)
        .values(status=transition.target, **(values or {}))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.get(AccessRequestRow, request_id, populate_existing=True)
    assert row is not None
    if transition.audit is not None:
        record(session, row, actor=actor, action=transition.audit, at=at, details=details)
    if transition.notice is not None:
        notify(session, row, transition.notice, at=at, payload=payload)
    if transition.outcome is not None:
        metrics.access_outcome(session, transition.outcome)
    return row


def move_or_refuse(
    session: Session,
    transition: Transition,
    request_id: int,
    *,
    actor: str,
    at: datetime,
    values: Mapping[str, object] | None = None,
    details: Mapping[str, object] | None = None,
    payload: Mapping[str, object] | None = None,
) -> AccessRequestRow:
    """``move``, raising ``AlreadyDecided`` (saying where the request stands) when it is refused."""
    row = move(session, transition, request_id, actor=actor, at=at, values=values, details=details, payload=payload)
    if row is None:
        current = session.scalar(select(AccessRequestRow.status).where(AccessRequestRow.id == request_id))
        raise already_decided(request_id, str(current))
    return row


def submitted(session: Session, row: AccessRequestRow, *, at: datetime) -> None:
    """A new ``pending`` request (added and flushed by the caller): audit it, tell the approvers, count it."""
    details = {"reason": row.reason, "requester_login": row.requester_login}
    if row.origin not in (None, "slack"):  # made outside Slack: by which way, and with which request client
        details |= {"origin": row.origin, "request_client": row.request_client_id}
    record(session, row, actor=row.requester_id, action=AccessAudit.REQUESTED, at=at, details=details)
    notify(session, row, Notice.REQUESTED, at=at)
    metrics.access_requested(session)


def record(
    session: Session,
    row: AccessRequestRow,
    *,
    actor: str,
    action: AccessAudit,
    at: datetime,
    details: Mapping[str, object] | None = None,
) -> None:
    """Audit an event of the request in the caller's transaction (its status as stored now is ``new``)."""
    audit.record(
        session,
        at=at,
        actor=actor,
        action=action,
        target=f"request/{row.id}",
        new=row.status,
        comment=None,
        details={
            "request_id": row.id,
            "profile": row.profile_id,
            "device_id": row.device_id,
            "attribute": row.attribute,
            **(details or {}),
        },
    )


def notify(
    session: Session, row: AccessRequestRow, kind: Notice, *, at: datetime, payload: Mapping[str, object] | None = None
) -> None:
    """Queue an outbox notification of the request in the caller's transaction."""
    session.add(NotificationRow(request_id=row.id, kind=kind, created_at=at, payload=dict(payload or {})))
