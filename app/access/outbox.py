"""The notification outbox and the record of posted messages.

State changes queue notifications in their own transaction; a dispatcher (the Slack layer) claims them,
delivers them and marks them sent. A failed delivery is retried later with backoff; a claim that was
never finished (process killed) is taken over after its lease runs out.

Notifications of one request are delivered in order, except the unordered kinds (``Delivery``): a channel
announcement and the admins' alert about a channel accessbot cannot post to neither wait for nor hold back
the DMs and message updates of their request. A channel post that fails for good is given up at once and
recorded as a channel problem (one per channel and Slack error), which alerts the admins once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.clock import Clock, utcnow
from app.db import Database
from app.db.tables.access import ChannelProblemRow, NotificationRow, PostedMessageRow

LEASE = timedelta(minutes=2)
"""How long a claim lasts by default (config ``notification_lease``)."""
MAX_ATTEMPTS = 12

_WRITER = threading.Lock()
"""One outbox write transaction at a time per process (claim, done, failed, defer). Deliveries run on many work
threads; on SQLite's single writer they all waited in its busy handler (a poll that sleeps up to 100 ms, no
queue), and a submission or approval waiting among them was acknowledged past Slack's 3 s. Queued here, they wait
in order and leave the busy handler to the writes someone waits for. Each transaction takes milliseconds, so
one at a time costs PostgreSQL nothing that matters."""


class Delivery(StrEnum):
    """Outbox kinds the notifier queues itself, outside the per-request order (``Notice`` kinds keep it)."""

    CHANNEL_POST = "channel_post"
    """Announce a grant in the profile's notify channel; payload ``channel``, ``notice`` (the granted one's id)."""
    CHANNEL_ALERT = "channel_alert"
    """DM every admin that a notify channel refuses posts; payload ``channel``, ``error``, ``profile``."""


UNORDERED = frozenset({Delivery.CHANNEL_POST, Delivery.CHANNEL_ALERT})
"""Kinds that neither wait for earlier notifications of their request nor make later ones wait."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One claimed notification."""

    id: int
    request_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A notification to queue when the one delivered is marked sent (same transaction)."""

    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChannelProblem:
    """An open channel problem, for App Home and ``/posture status``."""

    channel: str
    error: str
    profile_id: str
    opened_at: datetime
    last_seen_at: datetime
    occurrences: int
    alerted_at: datetime | None


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """A message posted about a request."""

    audience: str
    channel: str
    ts: str


class Outbox:
    """Claim, complete and fail notifications; remember posted messages."""

    def __init__(self, db: Database, *, clock: Clock = utcnow, lease: Callable[[], timedelta] = lambda: LEASE) -> None:
        self.db = db
        self.clock = clock
        self.lease = lease

    def claim(self, *, request_id: int | None = None, limit: int = 50) -> list[Notification]:
        """Claim due notifications in creation order (one claimer wins each, across processes).

        One write transaction for the whole batch: a conditional ``UPDATE ... RETURNING`` of the candidates,
        so a row another process claimed between the read and the update is simply not returned.
        """
        now = self.clock()
        claimed_until = now + self.lease()
        due = or_(NotificationRow.claimed_until.is_(None), NotificationRow.claimed_until <= now)
        with self.db.session() as session:
            stmt = (
                select(NotificationRow.id)
                .where(NotificationRow.sent_at.is_(None), NotificationRow.attempts < MAX_ATTEMPTS, due)
                .order_by(NotificationRow.id)
                .limit(limit)
            )
            if request_id is not None:
                stmt = stmt.where(NotificationRow.request_id == request_id)
            candidates = list(session.scalars(stmt))
        if not candidates:
            return []
        with _WRITER, self.db.session() as session:
            rows = session.execute(
                update(NotificationRow)
                .where(NotificationRow.id.in_(candidates), NotificationRow.sent_at.is_(None), due)
                .values(claimed_until=claimed_until, attempts=NotificationRow.attempts + 1)
                .returning(
                    NotificationRow.id,
                    NotificationRow.request_id,
                    NotificationRow.kind,
                    NotificationRow.payload,
                    NotificationRow.attempts,
                )
                .execution_options(synchronize_session=False)
            ).all()
        claimed = [Notification(r.id, r.request_id, r.kind, dict(r.payload or {}), r.attempts) for r in rows]
        return sorted(claimed, key=lambda n: n.id)

    def earlier_unsent(self, notification: Notification) -> bool:
        """Whether an older notification of the same request is still undelivered (keep order).

        Unordered kinds (``UNORDERED``) never wait, and never make another notification wait.
        """
        if notification.kind in UNORDERED:
            return False
        with self.db.session() as session:
            return (
                session.scalar(
                    select(NotificationRow.id)
                    .where(
                        NotificationRow.request_id == notification.request_id,
                        NotificationRow.id < notification.id,
                        NotificationRow.sent_at.is_(None),
                        NotificationRow.attempts < MAX_ATTEMPTS,
                        NotificationRow.kind.not_in(list(UNORDERED)),
                    )
                    .limit(1)
                )
                is not None
            )

    def done(
        self,
        notification: Notification,
        *,
        then: Iterable[FollowUp] = (),
        posted: Iterable[PostedMessage] = (),
        channel_works: str | None = None,
        claim_then: bool = False,
    ) -> list[Notification]:
        """Mark delivered in one transaction with what the delivery made: the messages it ``posted``, the
        notifications to queue ``then``, and ``channel_works`` (a channel whose open problems its post resolved).

        Only the first to mark it queues ``then``, so a notification delivered twice (its lease ran out
        mid-delivery) still has its follow-ups once. With ``claim_then`` they are queued already claimed by the
        caller (returned; no claim transaction of their own): deliver them now, or they wait for the lease.
        """
        now = self.clock()
        queued: list[NotificationRow] = []
        with _WRITER, self.db.session() as session:
            _remember(session, notification.request_id, posted)
            result = session.execute(
                update(NotificationRow)
                .where(NotificationRow.id == notification.id, NotificationRow.sent_at.is_(None))
                .values(sent_at=now, claimed_until=None, last_error=None)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed_until = now + self.lease() if claim_then else None
                queued = [
                    NotificationRow(
                        request_id=notification.request_id,
                        kind=follow_up.kind,
                        created_at=now,
                        payload=follow_up.payload,
                        claimed_until=claimed_until,
                        attempts=1 if claim_then else 0,
                    )
                    for follow_up in then
                ]
                session.add_all(queued)
                session.flush()
            if channel_works is not None:
                _resolve_channel(session, channel_works, now)
            claimed = [Notification(r.id, r.request_id, r.kind, dict(r.payload or {}), r.attempts) for r in queued]
        return claimed if claim_then else []

    def failed(
        self,
        notification: Notification,
        error: str,
        *,
        retry_in: timedelta | None = None,
        posted: Iterable[PostedMessage] = (),
    ) -> None:
        """Release the claim so the notification is retried after a backoff; remember what it ``posted`` before
        failing (same transaction), so the retry posts only what is missing."""
        delay = retry_in or min(timedelta(seconds=15 * 2 ** (notification.attempts - 1)), timedelta(hours=1))
        with _WRITER, self.db.session() as session:
            _remember(session, notification.request_id, posted)
            session.execute(
                update(NotificationRow)
                .where(NotificationRow.id == notification.id)
                .values(claimed_until=self.clock() + delay, last_error=error[:2000])
            )

    def defer(self, notification: Notification) -> None:
        """Release a claim at once without counting an attempt: the notification waits for an earlier one."""
        with _WRITER, self.db.session() as session:
            session.execute(
                update(NotificationRow)
                .where(NotificationRow.id == notification.id, NotificationRow.sent_at.is_(None))
                .values(
                    claimed_until=None,
                    attempts=NotificationRow.attempts - 1,
                    last_error="waiting for an earlier notification",
                )
            )

    def pending_count(self) -> int:
        """Undelivered notifications that will still be tried."""
        with self.db.session() as session:
            return len(
                session.scalars(
                    select(NotificationRow.id).where(
                        and_(NotificationRow.sent_at.is_(None), NotificationRow.attempts < MAX_ATTEMPTS)
                    )
                ).all()
            )

    # -- channel problems ------------------------------------------------------------------------------

    def channel_refused(self, notification: Notification, *, channel: str, error: str, profile_id: str) -> bool:
        """Give up a channel post Slack refused for good, and record the channel problem; True when this call
        queued the admins' alert (the first failure of an open problem, across processes and restarts).

        All in one transaction: the post is never retried (it would fail the same way for hours), and the
        problem row decides who alerts: a conditional UPDATE of ``alerted_at``, which only one writer wins.
        """
        problem = _Problem(channel, error, profile_id, notification.request_id)
        for attempt in (1, 2):  # a second try only after losing the race to create the problem row
            try:
                with self.db.session() as session:
                    now = self.clock()
                    _give_up(session, notification.id, error)
                    problem.seen(session, now)
                    return problem.alert(session, now)
            except IntegrityError:
                if attempt == 2:
                    raise
        return False  # pragma: no cover - the loop returns or raises

    def channel_works(self, channel: str) -> int:
        """A post to ``channel`` succeeded: its open problems are resolved (a new failure alerts again)."""
        with self.db.session() as session:
            return _resolve_channel(session, channel, self.clock())

    def channel_problems(self) -> list[ChannelProblem]:
        """Open channel problems, oldest first."""
        return open_channel_problems(self.db)

    # -- posted messages -----------------------------------------------------------------------------

    def remember(self, request_id: int, audience: str, channel: str, ts: str) -> None:
        """Remember a posted message so later changes can update it."""
        with self.db.session() as session:
            session.add(PostedMessageRow(request_id=request_id, audience=audience, channel=channel, ts=ts))

    def messages(self, request_id: int) -> list[PostedMessage]:
        """Every message posted about a request, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(
                select(PostedMessageRow).where(PostedMessageRow.request_id == request_id).order_by(PostedMessageRow.id)
            )
            return [PostedMessage(r.audience, r.channel, r.ts) for r in rows]


def open_channel_problems(db: Database) -> list[ChannelProblem]:
    """Notify channels accessbot cannot post to right now (not resolved), oldest first."""
    with db.session() as session:
        rows = session.scalars(
            select(ChannelProblemRow)
            .where(ChannelProblemRow.resolved_at.is_(None))
            .order_by(ChannelProblemRow.opened_at, ChannelProblemRow.id)
        )
        return [
            ChannelProblem(r.channel, r.error, r.profile_id, r.opened_at, r.last_seen_at, r.occurrences, r.alerted_at)
            for r in rows
        ]


def _remember(session: Session, request_id: int, posted: Iterable[PostedMessage]) -> None:
    """Record posted messages in the caller's transaction."""
    session.add_all(
        PostedMessageRow(request_id=request_id, audience=m.audience, channel=m.channel, ts=m.ts) for m in posted
    )


def _resolve_channel(session: Session, channel: str, now: datetime) -> int:
    """Resolve the open problems of ``channel`` in the caller's transaction; returns how many."""
    result = session.execute(
        update(ChannelProblemRow)
        .where(ChannelProblemRow.channel == channel, ChannelProblemRow.resolved_at.is_(None))
        .values(resolved_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _give_up(session: Session, notification_id: int, error: str) -> None:
    """Never try the notification again (unless it was delivered meanwhile)."""
    session.execute(
        update(NotificationRow)
        .where(NotificationRow.id == notification_id, NotificationRow.sent_at.is_(None))
        .values(attempts=MAX_ATTEMPTS, claimed_until=None, last_error=f"gave up: {error}"[:2000])
    )


@dataclass(frozen=True, slots=True)
class _Problem:
    """One failure of a post to a notify channel, recorded in the caller's transaction."""

    channel: str
    error: str
    profile_id: str
    request_id: int

    def _same(self) -> tuple[ColumnElement[bool], ...]:
        return (ChannelProblemRow.channel == self.channel, ChannelProblemRow.error == self.error)

    def seen(self, session: Session, now: datetime) -> None:
        """Count the failure on its problem row: reopened if it had been resolved, created if new (a racing
        creator makes the flush raise ``IntegrityError``: the caller tries again and finds the row)."""
        session.execute(  # a problem that was fixed and is back: open it again, alert again
            update(ChannelProblemRow)
            .where(*self._same(), ChannelProblemRow.resolved_at.is_not(None))
            .values(resolved_at=None, alerted_at=None, opened_at=now, occurrences=0)
        )
        seen = session.execute(
            update(ChannelProblemRow)
            .where(*self._same())
            .values(
                occurrences=ChannelProblemRow.occurrences + 1,
                last_seen_at=now,
                profile_id=self.profile_id,
                last_request_id=self.request_id,
            )
        )
        if seen.rowcount == 0:  # type: ignore[attr-defined]
            session.add(
                ChannelProblemRow(
                    channel=self.channel,
                    error=self.error,
                    profile_id=self.profile_id,
                    last_request_id=self.request_id,
                    opened_at=now,
                    last_seen_at=now,
                    occurrences=1,
                )
            )
            session.flush()

    def alert(self, session: Session, now: datetime) -> bool:
        """Queue the admins' alert if nobody has for this open problem yet (one writer wins ``alerted_at``)."""
        claimed = session.execute(
            update(ChannelProblemRow)
            .where(*self._same(), ChannelProblemRow.alerted_at.is_(None))
            .values(alerted_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        session.add(
            NotificationRow(
                request_id=self.request_id,
                kind=Delivery.CHANNEL_ALERT,
                created_at=now,
                payload={"channel": self.channel, "error": self.error, "profile": self.profile_id},
            )
        )
        return True
