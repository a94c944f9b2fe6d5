"""Time-driven steps of the access flow, all derived from database state so a restart loses nothing.

Each step selects due requests and moves each through ``app.access.transitions`` (a conditional UPDATE), so
two schedulers running the same step at once still act on every request exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Select, select

from app.access import break_glass, transitions
from app.access.grants import grant_comment, write_of_interrupted_grant
from app.access.queries import approvals
from app.access.scheduling import ScheduledStarts
from app.access.transitions import Transition
from app.config.model import Config
from app.core.clock import Clock, utcnow
from app.db import Database
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.tailnet import Tailnet
from app.tailnet.models import Actor, AttributeWrite

if TYPE_CHECKING:
    from app.access.service import AccessService

log = logging.getLogger(__name__)

SYSTEM = "system:access"
INTERRUPTED = "the grant was interrupted before the attribute was written"


class Lifecycle:
    """Request timeouts, expiry reminders, ended grants and recovery of interrupted grants."""

    def __init__(
        self,
        db: Database,
        tailnet: Tailnet,
        config: Callable[[], Config],
        *,
        clock: Clock = utcnow,
        access: AccessService | None = None,
    ) -> None:
        self.db = db
        self.tailnet = tailnet
        self.config = config
        self.clock = clock
        self.access = access
        """Writes scheduled requests at their start (``grant_started``); the composition root always passes it."""

    def run_all(self) -> dict[str, int]:
        """Run every step once; returns how many requests each step moved."""
        return {
            "request_expired": self.expire_pending(),
            "reminded": self.send_reminders(),
            "ended": self.end_expired_grants(),
            "recovered": self.recover_stuck_grants(),
            "started": self.start_scheduled(),
            "start_reminded": self.remind_scheduled(),
            "review_reminded": self.remind_break_glass_reviews(),
        }

    def remind_break_glass_reviews(self) -> int:
        """Remind approvers of break-glass grants left unreviewed (``break_glass_review_every``, once per period)."""
        return break_glass.remind_unreviewed(self.db, now=self.clock(), every=self.config().break_glass_review_every)

    def start_scheduled(self) -> int:
        """Scheduled requests whose start came are written until their window's end, exactly once
        (``app.access.scheduling``); a window that passed unstarted ends without a write. Without an access
        service (tests of the other steps) nothing is started."""
        return self._scheduled().start_due() if self.access is not None else 0

    def remind_scheduled(self) -> int:
        """Remind requesters ``reminder_before`` their scheduled access starts (once per request)."""
        return self._scheduled().remind()

    def _scheduled(self) -> ScheduledStarts:
        write = self.access.grant_started if self.access is not None else _no_writer
        return ScheduledStarts(self.db, self.config, write, clock=self.clock, actor=SYSTEM)

    def expire_pending(self) -> int:
        """Pending requests past their review timeout become ``expired``; the requester is told."""
        now = self.clock()
        ids = self._ids(
            select(AccessRequestRow.id).where(
                AccessRequestRow.status == RequestStatus.PENDING, AccessRequestRow.timeout_at <= now
            )
        )
        values = {"ended_at": now, "ended_note": "nobody reviewed it in time"}
        return sum(self._move(transitions.EXPIRE_REQUEST, i, values) for i in ids)

    def send_reminders(self) -> int:
        """Remind requesters ``reminder_before`` their access ends (once per grant, with Extend)."""
        now = self.clock()
        before = self.config().reminder_before
        moved = 0
        with self.db.session() as session:
            candidates = session.execute(
                select(AccessRequestRow.id, AccessRequestRow.granted_at, AccessRequestRow.expires_at).where(
                    AccessRequestRow.status == RequestStatus.GRANTED,
                    AccessRequestRow.reminder_sent_at.is_(None),
                    AccessRequestRow.expires_at > now,
                    AccessRequestRow.expires_at <= now + before,
                )
            ).all()
        for request_id, granted_at, expires_at in candidates:
            if granted_at is not None and expires_at - granted_at <= before:
                continue  # a grant shorter than the reminder window gets no reminder
            once = (AccessRequestRow.reminder_sent_at.is_(None),)
            moved += self._move(transitions.REMIND, request_id, {"reminder_sent_at": now}, only_if=once)
        return moved

    def end_expired_grants(self) -> int:
        """Grants whose attribute expired become ``ended``; the requester is told."""
        now = self.clock()
        ids = self._ids(
            select(AccessRequestRow.id).where(
                AccessRequestRow.status == RequestStatus.GRANTED, AccessRequestRow.expires_at <= now
            )
        )
        return sum(self._move(transitions.END, i, {"ended_at": now}) for i in ids)

    def recover_stuck_grants(self) -> int:
        """A grant interrupted mid-write (process killed) is resolved from the tailnet's actual state.

        A request still ``granting`` ``grant_recovery_after`` (config) after its approval is taken to be
        interrupted. If the attribute is on the device with the request's value, the request is ``granted``;
        otherwise it becomes ``failed`` with a Retry button. Never left hanging, never granted twice.
        """
        now = self.clock()
        recovery_after = self.config().grant_recovery_after
        with self.db.session() as session:
            stuck = list(
                session.scalars(
                    select(AccessRequestRow).where(
                        AccessRequestRow.status == RequestStatus.GRANTING,
                        AccessRequestRow.granting_since <= now - recovery_after,
                    )
                )
            )
        moved = 0
        for row in stuck:
            try:
                current = self.tailnet.get_attributes(row.device_id)
            except Exception as exc:  # the tailnet is down: try again next run
                log.warning("cannot check interrupted grant %s: %s", row.id, exc)
                continue
            write = write_of_interrupted_grant(row, current, now)
            if write is not None and row.granting_since is not None:
                self._adopt(row, write, row.granting_since)
                granted = {"granted_at": row.granting_since, "expires_at": write.expiry, "granting_since": None}
                moved += self._move(transitions.GRANT, row.id, granted)
            else:
                failed = {"granting_since": None, "last_error": INTERRUPTED}
                moved += self._move(transitions.FAIL, row.id, failed)
        return moved

    def _adopt(self, row: AccessRequestRow, write: AttributeWrite, since: datetime) -> None:
        """Have the tailnet record the interrupted grant's write (the audit event its writer never made)."""
        with self.db.session() as session:
            approvers = approvals(session, row.id)
        actor = Actor(approvers[-1] if approvers else SYSTEM)
        comment = grant_comment(row.requester_email or row.requester_id, row.reason, approvers or [SYSTEM])
        self.tailnet.adopt_write(row.device_id, row.attribute, write, actor=actor, comment=comment, since=since)

    def _ids(self, stmt: Select[tuple[int]]) -> list[int]:
        with self.db.session() as session:
            return list(session.scalars(stmt))

    def _move(
        self,
        transition: Transition,
        request_id: int,
        values: dict[str, object],
        *,
        only_if: tuple[ColumnElement[bool], ...] = (),
    ) -> int:
        """1 if this process made ``transition`` on the request, 0 if another moved it first."""
        now = self.clock()
        with self.db.session() as session:
            row = transitions.move(
                session, transition, request_id, actor=SYSTEM, at=now, values=values, only_if=only_if
            )
            return int(row is not None)


def _no_writer(request_id: int, actor: str) -> None:
    raise RuntimeError(f"no access service to start scheduled request {request_id}")
