"""The notification outbox and the record of posted messages.

State changes queue notifications in their own transaction; a dispatcher (the Slack layer) claims them,
delivers them and marks them sent. A failed delivery is retried later with backoff; a claim that was
never finished (process killed) is taken over after its lease runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from app.access.models import NotificationRow, PostedMessageRow
from app.clock import Clock, utcnow
from app.db import Database

LEASE = timedelta(minutes=2)
"""How long a claim lasts by default (config ``notification_lease``)."""
MAX_ATTEMPTS = 12


@dataclass(frozen=True, slots=True)
class Notification:
    """One claimed notification."""

    id: int
    request_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


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
        """Claim due notifications in creation order (one claimer wins each, across processes)."""
        now = self.clock()
        claimed_until = now + self.lease()
        with self.db.session() as session:
            stmt = (
                select(NotificationRow.id)
                .where(
                    NotificationRow.sent_at.is_(None),
                    NotificationRow.attempts < MAX_ATTEMPTS,
                    or_(NotificationRow.claimed_until.is_(None), NotificationRow.claimed_until <= now),
                )
                .order_by(NotificationRow.id)
                .limit(limit)
            )
            if request_id is not None:
                stmt = stmt.where(NotificationRow.request_id == request_id)
            candidates = list(session.scalars(stmt))
        claimed: list[Notification] = []
        for notification_id in candidates:
            with self.db.session() as session:
                result = session.execute(
                    update(NotificationRow)
                    .where(
                        NotificationRow.id == notification_id,
                        NotificationRow.sent_at.is_(None),
                        or_(NotificationRow.claimed_until.is_(None), NotificationRow.claimed_until <= now),
                    )
                    .values(claimed_until=claimed_until, attempts=NotificationRow.attempts + 1)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                row = session.get(NotificationRow, notification_id, populate_existing=True)
                assert row is not None
                claimed.append(Notification(row.id, row.request_id, row.kind, dict(row.payload or {}), row.attempts))
        return claimed

    def earlier_unsent(self, notification: Notification) -> bool:
        """Whether an older notification of the same request is still undelivered (keep order)."""
        with self.db.session() as session:
            return (
                session.scalar(
                    select(NotificationRow.id)
                    .where(
                        NotificationRow.request_id == notification.request_id,
                        NotificationRow.id < notification.id,
                        NotificationRow.sent_at.is_(None),
                        NotificationRow.attempts < MAX_ATTEMPTS,
                    )
                    .limit(1)
                )
                is not None
            )

    def done(self, notification: Notification) -> None:
        """Mark delivered."""
        with self.db.session() as session:
            session.execute(
                update(NotificationRow)
                .where(NotificationRow.id == notification.id)
                .values(sent_at=self.clock(), claimed_until=None, last_error=None)
            )

    def failed(self, notification: Notification, error: str, *, retry_in: timedelta | None = None) -> None:
        """Release the claim so the notification is retried after a backoff."""
        delay = retry_in or min(timedelta(seconds=15 * 2 ** (notification.attempts - 1)), timedelta(hours=1))
        with self.db.session() as session:
            session.execute(
                update(NotificationRow)
                .where(NotificationRow.id == notification.id)
                .values(claimed_until=self.clock() + delay, last_error=error[:2000])
            )

    def defer(self, notification: Notification) -> None:
        """Release a claim at once without counting an attempt: the notification waits for an earlier one."""
        with self.db.session() as session:
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
