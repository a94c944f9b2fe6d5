"""Scheduled access: a request with a start time is approved ahead and written when its window opens.

A request may carry ``starts_at``; its window is ``[starts_at, starts_at + duration)``. The deciding approval
before the start moves it ``pending -> scheduled`` (``SCHEDULE``); at the start the lifecycle moves it
``scheduled -> granting`` (``START``, a conditional UPDATE, so exactly one process writes) and the attribute is
written with the window's end as its expiry, announced only after the write like any grant. Everything derives
from the row, so a restart loses nothing:

- an approval after the start (but inside the window) grants at once, still until the window's end;
- a pending request expires unreviewed at its window's end at the latest (``timeout_at``);
- a start found after the whole window passed (no scheduler ran) ends the request without writing (``MISS_START``);
- revoking before the start writes nothing to the tailnet (``UNSCHEDULE``);
- ``reminder_before`` ahead of the start the requester is reminded once (``REMIND_START``, marked by
  ``reminder_sent_at``, which ``START`` clears again for the expiry reminder).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access import transitions
from app.config.model import Config
from app.core.clock import Clock
from app.core.timefmt import format_duration, format_rfc3339
from app.db import Database
from app.db.tables.access import AccessRequestRow, RequestStatus

log = logging.getLogger(__name__)

START_SLACK = timedelta(minutes=1)
"""A start this far in the past is taken as "now" (the picker has minute steps; the form takes time to fill)."""
MISSED_NOTE = "its window passed before it could start"
BREAK_GLASS_START = "Break glass grants access now; leave the start empty (or untick break glass to schedule it)."


# -- pure rules ----------------------------------------------------------------------------------------


def start_error(starts_at: datetime | None, *, now: datetime, max_ahead: timedelta) -> str | None:
    """Why ``starts_at`` cannot be asked for (``None``: it can, or no start was chosen)."""
    if starts_at is None:
        return None
    if starts_at < now - START_SLACK:
        return "That start is in the past. Choose a later time, or leave it empty to start when approved."
    if starts_at > now + max_ahead:
        return f"Choose a start within {format_duration(max_ahead)} from now."
    return None


def chosen_start(starts_at: datetime | None, now: datetime) -> datetime | None:
    """The start to store: ``None`` (start on approval) for an empty one or one that is not in the future."""
    return starts_at if starts_at is not None and starts_at > now else None


def review_deadline(
    now: datetime, request_timeout: timedelta, starts_at: datetime | None, duration: timedelta
) -> datetime:
    """When a pending request expires unreviewed: the request timeout, and never after its window's end."""
    deadline = now + request_timeout
    return deadline if starts_at is None else min(deadline, starts_at + duration)


def starts_later(starts_at: datetime | None, now: datetime) -> bool:
    """Whether an approval now schedules the request rather than granting it at once."""
    return starts_at is not None and starts_at > now


def grant_expiry(starts_at: datetime | None, duration: timedelta, now: datetime) -> datetime:
    """The attribute's expiry: the window's end for a scheduled request, else ``now`` plus the duration."""
    return now + duration if starts_at is None else starts_at + duration


def window_problem(starts_at: datetime | None, expiry: datetime, now: datetime) -> str | None:
    """Why a scheduled request can no longer be written: its window has ended (``None``: it can)."""
    if starts_at is None or expiry > now:
        return None
    return f"its scheduled window ended at {format_rfc3339(expiry)}, so nothing was written"


def is_missed(starts_at: datetime, duration: timedelta, now: datetime) -> bool:
    """Whether the whole window passed before the start was made."""
    return starts_at + duration <= now


def wants_start_reminder(starts_at: datetime, decided_at: datetime | None, now: datetime, before: timedelta) -> bool:
    """The "starts soon" reminder is due ``before`` the start, unless the approval came that late anyway (its DM
    already said when it starts)."""
    return now < starts_at <= now + before and (decided_at is None or decided_at <= starts_at - before)


# -- moves in the caller's transaction -----------------------------------------------------------------


def schedule(session: Session, row: AccessRequestRow, user_id: str, now: datetime) -> AccessRequestRow:
    """The deciding approval of a request that starts later: ``scheduled``, audited and told."""
    assert row.starts_at is not None
    ends = row.starts_at + timedelta(seconds=row.duration_seconds)
    return transitions.move_or_refuse(
        session,
        transitions.SCHEDULE,
        row.id,
        actor=user_id,
        at=now,
        values={"decided_at": now, "decided_by": user_id},
        details={"starts_at": format_rfc3339(row.starts_at), "ends_at": format_rfc3339(ends)},
        payload={"approver": user_id},
    )


def unschedule(session: Session, request_id: int, user_id: str, now: datetime) -> AccessRequestRow:
    """Revoke a scheduled request before its start (nothing was written, so nothing is deleted)."""
    return transitions.move_or_refuse(
        session,
        transitions.UNSCHEDULE,
        request_id,
        actor=user_id,
        at=now,
        values={"ended_at": now, "ended_by": user_id, "ended_note": "revoked before it started"},
        details={"before_start": True},
        payload={"by": user_id},
    )


# -- the lifecycle's steps -----------------------------------------------------------------------------


class ScheduledStarts:
    """The clock's part of scheduled access: starts due requests (exactly once) and reminds before the start.

    ``write`` is the grant's write for a request already moved to ``granting`` (``AccessService.grant_started``):
    it checks the posture again, writes the attribute until the window's end and records granted or failed.
    """

    def __init__(
        self,
        db: Database,
        config: Callable[[], Config],
        write: Callable[[int, str], object],
        *,
        clock: Clock,
        actor: str,
    ) -> None:
        self.db = db
        self.config = config
        self.write = write
        self.clock = clock
        self.actor = actor

    def start_due(self) -> int:
        """Start every scheduled request whose start came; returns how many this process started or ended."""
        now = self.clock()
        with self.db.session() as session:
            due = session.execute(
                select(AccessRequestRow.id, AccessRequestRow.starts_at, AccessRequestRow.duration_seconds)
                .where(AccessRequestRow.status == RequestStatus.SCHEDULED, AccessRequestRow.starts_at <= now)
                .order_by(AccessRequestRow.starts_at)
            ).all()
        moved = 0
        for request_id, starts_at, seconds in due:
            if is_missed(starts_at, timedelta(seconds=seconds), now):
                moved += self._miss(request_id)
            elif self._claim(request_id):
                moved += 1
                self._write(request_id)
        return moved

    def remind(self) -> int:
        """Tell requesters ``reminder_before`` their scheduled access starts (once per request)."""
        now = self.clock()
        before = self.config().reminder_before
        with self.db.session() as session:
            candidates = session.execute(
                select(AccessRequestRow.id, AccessRequestRow.starts_at, AccessRequestRow.decided_at).where(
                    AccessRequestRow.status == RequestStatus.SCHEDULED,
                    AccessRequestRow.reminder_sent_at.is_(None),
                    AccessRequestRow.starts_at > now,
                    AccessRequestRow.starts_at <= now + before,
                )
            ).all()
        once = (AccessRequestRow.reminder_sent_at.is_(None),)
        moved = 0
        for request_id, starts_at, decided_at in candidates:
            if not wants_start_reminder(starts_at, decided_at, now, before):
                continue
            with self.db.session() as session:
                row = transitions.move(
                    session,
                    transitions.REMIND_START,
                    request_id,
                    actor=self.actor,
                    at=now,
                    values={"reminder_sent_at": now},
                    only_if=once,
                )
                moved += int(row is not None)
        return moved

    def _claim(self, request_id: int) -> bool:
        """``scheduled -> granting``: the one process whose UPDATE touched the row writes the attribute."""
        now = self.clock()
        with self.db.session() as session:
            row = transitions.move(
                session,
                transitions.START,
                request_id,
                actor=self.actor,
                at=now,
                values={"granting_since": now, "reminder_sent_at": None},
            )
            return row is not None

    def _write(self, request_id: int) -> None:
        """Write the claimed request; an unexpected failure leaves it ``granting`` for the interrupted-grant
        recovery (never lost, never written twice)."""
        try:
            self.write(request_id, self.actor)
        except Exception:
            log.exception("starting scheduled request %s failed", request_id)

    def _miss(self, request_id: int) -> int:
        now = self.clock()
        with self.db.session() as session:
            row = transitions.move(
                session,
                transitions.MISS_START,
                request_id,
                actor=self.actor,
                at=now,
                values={"ended_at": now, "ended_note": MISSED_NOTE},
            )
            return int(row is not None)
