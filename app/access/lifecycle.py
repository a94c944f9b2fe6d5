"""Time-driven steps of the access flow, all derived from database state so a restart loses nothing.

Each step selects due requests and moves each with a conditional UPDATE, so two schedulers running the
same step at once still act on every request exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.access.read_model import AccessAudit, Notice
from app.access.service import grant_comment
from app.access.tables import AccessRequestRow, NotificationRow, RequestStatus, VoteRow
from app.config.settings import Config
from app.core import metrics
from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.tailnet import Tailnet
from app.tailnet.models import Actor, AttributeWrite

log = logging.getLogger(__name__)

SYSTEM = "system:access"


class Lifecycle:
    """Request timeouts, expiry reminders, ended grants and recovery of interrupted grants."""

    def __init__(self, db: Database, tailnet: Tailnet, config: Callable[[], Config], *, clock: Clock = utcnow) -> None:
        self.db = db
        self.tailnet = tailnet
        self.config = config
        self.clock = clock

    def run_all(self) -> dict[str, int]:
        """Run every step once; returns how many requests each step moved."""
        return {
            "request_expired": self.expire_pending(),
            "reminded": self.send_reminders(),
            "ended": self.end_expired_grants(),
            "recovered": self.recover_stuck_grants(),
        }

    def expire_pending(self) -> int:
        """Pending requests past their review timeout become ``expired``; the requester is told."""
        now = self.clock()
        ids = self._ids(
            select(AccessRequestRow.id).where(
                AccessRequestRow.status == RequestStatus.PENDING, AccessRequestRow.timeout_at <= now
            )
        )
        return sum(
            self._move(
                i,
                RequestStatus.PENDING,
                RequestStatus.EXPIRED,
                AccessAudit.REQUEST_EXPIRED,
                Notice.REQUEST_EXPIRED,
                ended_at=now,
                ended_note="nobody reviewed it in time",
            )
            for i in ids
        )

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
            with self.db.session() as session:
                result = session.execute(
                    update(AccessRequestRow)
                    .where(
                        AccessRequestRow.id == request_id,
                        AccessRequestRow.reminder_sent_at.is_(None),
                        AccessRequestRow.status == RequestStatus.GRANTED,
                    )
                    .values(reminder_sent_at=now)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    session.add(NotificationRow(request_id=request_id, kind=Notice.REMINDER, created_at=now))
                    moved += 1
        return moved

    def end_expired_grants(self) -> int:
        """Grants whose attribute expired become ``ended``; the requester is told."""
        now = self.clock()
        ids = self._ids(
            select(AccessRequestRow.id).where(
                AccessRequestRow.status == RequestStatus.GRANTED, AccessRequestRow.expires_at <= now
            )
        )
        return sum(
            self._move(i, RequestStatus.GRANTED, RequestStatus.ENDED, AccessAudit.EXPIRED, Notice.ENDED, ended_at=now)
            for i in ids
        )

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
            expires = current.expiries.get(row.attribute)
            duration = timedelta(seconds=row.duration_seconds)
            written_by_this_grant = (
                current.attributes.get(row.attribute) == row.value
                and expires is not None
                and row.granting_since is not None
                and row.granting_since + duration <= expires + timedelta(seconds=1)
                and expires <= now + duration
            )
            if written_by_this_grant:
                assert expires is not None and row.granting_since is not None
                self._adopt(row, AttributeWrite(row.value, expires), row.granting_since)
                moved += self._move(
                    row.id,
                    RequestStatus.GRANTING,
                    RequestStatus.GRANTED,
                    AccessAudit.GRANTED,
                    Notice.GRANTED,
                    granted_at=row.granting_since,
                    expires_at=expires,
                    granting_since=None,
                )
            else:
                moved += self._move(
                    row.id,
                    RequestStatus.GRANTING,
                    RequestStatus.FAILED,
                    AccessAudit.GRANT_FAILED,
                    Notice.FAILED,
                    granting_since=None,
                    last_error="the grant was interrupted before the attribute was written",
                )
        return moved

    def _adopt(self, row: AccessRequestRow, write: AttributeWrite, since: datetime) -> None:
        """Have the tailnet record the interrupted grant's write (the audit event its writer never made)."""
        with self.db.session() as session:
            approvers = list(
                session.scalars(select(VoteRow.approver_id).where(VoteRow.request_id == row.id).order_by(VoteRow.id))
            )
        actor = Actor(approvers[-1] if approvers else SYSTEM)
        comment = grant_comment(row.requester_email or row.requester_id, row.reason, approvers or [SYSTEM])
        self.tailnet.adopt_write(row.device_id, row.attribute, write, actor=actor, comment=comment, since=since)

    def _ids(self, stmt: object) -> list[int]:
        with self.db.session() as session:
            return list(session.scalars(stmt))  # type: ignore[call-overload]

    def _move(
        self,
        request_id: int,
        expected: RequestStatus,
        new: RequestStatus,
        action: AccessAudit,
        notice: Notice,
        **values: object,
    ) -> int:
        now = self.clock()
        with self.db.session() as session:
            result = session.execute(
                update(AccessRequestRow)
                .where(AccessRequestRow.id == request_id, AccessRequestRow.status == expected)
                .values(status=new, **values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return 0  # someone else moved it first
            self._record(session, request_id, action, new)
            session.add(NotificationRow(request_id=request_id, kind=notice, created_at=now))
            return 1

    def _record(self, session: Session, request_id: int, action: AccessAudit, status: RequestStatus) -> None:
        row = session.get(AccessRequestRow, request_id)
        assert row is not None
        metrics.access_event(session, action)
        audit.record(
            session,
            at=self.clock(),
            actor=SYSTEM,
            action=action,
            target=f"request/{request_id}",
            new=str(status),
            details={
                "request_id": request_id,
                "profile": row.profile_id,
                "device_id": row.device_id,
                "attribute": row.attribute,
            },
        )
