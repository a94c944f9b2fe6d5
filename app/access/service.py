"""Commands of the access flow: submit, approve, deny, retry, revoke.

Every state change is a conditional UPDATE on the request's status, so concurrent clicks — in one process
or many — act exactly once. Each change writes its audit event and its outbox notification in the same
transaction; the attribute is written only after approval, and announced only after the write succeeded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.access.errors import AlreadyDecided, DatabaseBusy, NotAllowed, RequestNotFound, SubmissionInvalid
from app.access.people import Directory
from app.access.read_model import AccessAudit, AccessRequest, Notice
from app.access.tables import AccessRequestRow, NotificationRow, RequestStatus, VoteRow
from app.config.profiles import Profile
from app.config.settings import Config
from app.core import metrics
from app.core.clock import Clock, utcnow
from app.core.timefmt import format_duration
from app.db import Database, audit
from app.db.session import is_locked
from app.posture.gate import PostureGate
from app.tailnet import Actor, Device, Tailnet
from app.tailnet.errors import NotFound, TailnetError

if TYPE_CHECKING:
    from app.posture.gate import PostureGate

log = logging.getLogger(__name__)

MAX_REASON = 200
MAX_REQUEST_ID = 2**31 - 1
MAX_COMMENT = 200

_STATUS_WORDS = {
    RequestStatus.GRANTING: "is being granted right now",
    RequestStatus.GRANTED: "was already approved and granted",
    RequestStatus.FAILED: "was approved but the grant failed; use Retry",
    RequestStatus.DENIED: "was already denied",
    RequestStatus.EXPIRED: "expired before anyone reviewed it",
    RequestStatus.REVOKED: "was revoked",
    RequestStatus.ENDED: "has ended",
    RequestStatus.PENDING: "is still waiting for approval",
}


NOTHING_SAVED = "accessbot's database is busy (another write held it too long), so nothing was changed. Try again."


def _unsettled(request_id: int, *, written: bool) -> str:
    outcome = "was written" if written else "could not be written"
    return (
        f"The attribute {outcome}, but accessbot's database is busy, so request {request_id} is not settled yet; "
        "accessbot settles it by itself within a few minutes."
    )


@contextlib.contextmanager
def _busy_means(message: str) -> Iterator[None]:
    """Turn SQLite's "database is locked" (the write lock held past the busy timeout, the transaction rolled back)
    into ``DatabaseBusy(message)``, which the Slack layer shows to the person who acted."""
    try:
        yield
    except OperationalError as exc:
        if not is_locked(exc):
            raise
        raise DatabaseBusy(message) from exc


def grant_comment(requester: str, reason: str, approvers: list[str]) -> str:
    """``<requester> via accessbot: <reason> (approved by <approvers>)``, cut to 200 characters."""
    tail = f" (approved by {', '.join(approvers)})"
    head = f"{requester} via accessbot: "
    room = MAX_COMMENT - len(head) - len(tail)
    text = reason if len(reason) <= room else reason[: max(room - 1, 0)] + "…"
    return (head + text + tail)[:MAX_COMMENT]


class AccessService:
    """The JIT state machine over the database and a tailnet."""

    def __init__(
        self,
        db: Database,
        tailnet: Tailnet,
        config: Callable[[], Config],
        directory: Directory,
        *,
        clock: Clock = utcnow,
        gate: PostureGate | None = None,
    ) -> None:
        self.db = db
        self.tailnet = tailnet
        self.config = config
        self.directory = directory
        self.clock = clock
        self.gate = gate

    def posture_problem(self, profile: Profile, device_id: str, device_name: str) -> str | None:
        """Why the device fails the profile's required posture (``None`` when it passes or none is required)."""
        if not profile.require_posture:
            return None
        if self.gate is None:
            return f"{profile.label()} requires {profile.require_posture}, but posture checks are not configured"
        result = self.gate.check(profile.require_posture, device_id)
        return None if result.passed else f"{device_name} does not meet {profile.require_posture}: {result.explanation}"

    # -- reading -------------------------------------------------------------------------------------

    def get(self, request_id: int) -> AccessRequest:
        """The request as stored now."""
        with self.db.session() as session:
            return self._snapshot(session, self._row(session, request_id))

    def profile_for(self, request: AccessRequest) -> Profile | None:
        """The request's profile in the current config (``None`` if it was removed)."""
        return self.config().profile(request.profile_id)

    def is_admin(self, user_id: str) -> bool:
        """Whether ``user_id`` is an accessbot admin."""
        config = self.config()
        if config.is_admin(user_id, None):  # listed by id: no need to ask the directory
            return True
        if not any("@" in a for a in config.admins):
            return False
        return config.is_admin(user_id, self.directory.email_of(user_id))

    def eligible_approvers(self, profile: Profile) -> set[str]:
        """User ids allowed to approve for ``profile`` (resolved now, never from a button)."""
        return self.directory.approvers_of(profile)

    def check_can_decide(self, request_id: int, user_id: str, *, verb: str = "approve") -> None:
        """Raise ``AccessError`` unless ``user_id`` may approve or deny the request now (writes nothing)."""
        with self.db.session() as session:
            row = self._row(session, request_id)
            self._require_status(row, RequestStatus.PENDING)
            self._require_approver(row, user_id, verb=verb)
            if verb == "approve" and user_id in self._approvals(session, row.id):
                raise AlreadyDecided("You already approved this request.")

    # -- submit --------------------------------------------------------------------------------------

    def check_submission(
        self,
        *,
        requester_id: str,
        profile_id: str | None,
        device: Device | None,
        duration: timedelta | None,
        approver_ids: list[str],
        reason: str,
    ) -> dict[str, str]:
        """Field errors of a request form (empty when it may be submitted). Writes nothing."""
        errors: dict[str, str] = {}
        profile = self.config().profile(profile_id) if profile_id else None
        if profile is None:
            errors["profile"] = "Choose one of the offered access profiles."
            return errors
        if device is None:
            errors["device"] = "That device is no longer in the tailnet. Choose another one."
        else:
            problem = self.posture_problem(profile, device.id, device.short_name)
            if problem:
                errors["device"] = f"{problem}."
        if duration is None:
            errors["duration"] = "Choose a duration."
        elif duration > profile.max_duration:
            errors["duration"] = f"{profile.label()} allows at most {format_duration(profile.max_duration)}."
        elif duration not in profile.offered_durations:
            offered = ", ".join(format_duration(d) for d in profile.offered_durations)
            errors["duration"] = f"Choose one of the offered durations: {offered}."
        eligible = self.eligible_approvers(profile)
        if not approver_ids:
            errors["approver"] = "Choose who should approve."
        elif requester_id in approver_ids and not profile.self_approval:
            errors["approver"] = "You cannot approve your own request for this profile; choose someone else."
        elif any(a not in eligible for a in approver_ids):
            errors["approver"] = f"Only the approvers of {profile.label()} can approve it."
        elif len(set(approver_ids) - ({requester_id} if not profile.self_approval else set())) < min(
            profile.approvals_required, len(eligible)
        ):
            errors["approver"] = f"This profile needs {profile.approvals_required} approvals; choose enough approvers."
        cleaned = reason.strip()
        if not cleaned:
            errors["reason"] = "Say why you need access."
        elif len(cleaned) > MAX_REASON:
            errors["reason"] = f"Keep the reason to {MAX_REASON} characters (it has {len(cleaned)})."
        elif "\x00" in cleaned or cleaned.encode("utf-8", "replace").decode("utf-8") != cleaned:
            errors["reason"] = "The reason contains characters that cannot be stored; please retype it."
        return errors

    def submit(
        self,
        *,
        requester_id: str,
        profile_id: str,
        device: Device | None,
        duration: timedelta | None,
        approver_ids: list[str],
        reason: str,
        extends_request_id: int | None = None,
    ) -> AccessRequest:
        """Store a pending request and queue the approver DMs; ``SubmissionInvalid`` on field errors."""
        errors = self.check_submission(
            requester_id=requester_id,
            profile_id=profile_id,
            device=device,
            duration=duration,
            approver_ids=approver_ids,
            reason=reason,
        )
        if errors:
            raise SubmissionInvalid(errors)
        assert device is not None and duration is not None
        profile = self.config().profile(profile_id)
        assert profile is not None
        now = self.clock()
        with _busy_means(NOTHING_SAVED), self.db.session() as session:
            row = AccessRequestRow(
                status=RequestStatus.PENDING,
                requester_id=requester_id,
                requester_email=self.directory.email_of(requester_id),
                profile_id=profile.id,
                attribute=profile.attribute,
                value=profile.typed_value,
                approvals_required=profile.approvals_required,
                device_id=device.id,
                device_name=device.name,
                device_owner=device.user,
                device_os=device.os,
                duration_seconds=int(duration.total_seconds()),
                reason=reason.strip(),
                approver_ids=list(dict.fromkeys(approver_ids)),
                created_at=now,
                timeout_at=now + self.config().request_timeout,
                extends_request_id=extends_request_id,
            )
            session.add(row)
            session.flush()
            self._audit(session, row, requester_id, AccessAudit.REQUESTED, {"reason": row.reason})
            self._notify(session, row, Notice.REQUESTED)
            return self._snapshot(session, row)

    # -- decide --------------------------------------------------------------------------------------

    def approve(self, request_id: int, user_id: str) -> AccessRequest:
        """Record ``user_id``'s approval; when enough approvals are in, write the attribute.

        Refuses (``NotAllowed``/``AlreadyDecided``) anyone who is not an eligible approver, who already
        approved, or who is the requester of a profile without self-approval.
        """
        eligible = self._eligible_for(request_id)
        now = self.clock()
        with _busy_means(NOTHING_SAVED), self.db.session() as session:
            row = self._row(session, request_id, lock=True)
            self._require_status(row, RequestStatus.PENDING)
            self._require_approver(row, user_id, eligible=eligible)
            session.add(VoteRow(request_id=row.id, approver_id=user_id, at=now))
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyDecided("You already approved this request.") from None
            votes = self._approvals(session, row.id)
            self._audit(session, row, user_id, AccessAudit.APPROVED, {"approvals": len(votes)})
            if len(votes) < row.approvals_required:
                self._transition(session, row, RequestStatus.PENDING, RequestStatus.PENDING)
                self._notify(session, row, Notice.VOTE_RECORDED, {"approver": user_id})
                return self._snapshot(session, row)
            self._transition(
                session,
                row,
                RequestStatus.PENDING,
                RequestStatus.GRANTING,
                decided_at=now,
                decided_by=user_id,
                granting_since=now,
            )
        return self._grant(request_id, user_id)

    def deny(self, request_id: int, user_id: str, reason: str | None = None) -> AccessRequest:
        """Deny a pending request (any eligible approver may)."""
        eligible = self._eligible_for(request_id)
        now = self.clock()
        reason = (reason or "").strip()[:500] or None
        with _busy_means(NOTHING_SAVED), self.db.session() as session:
            row = self._row(session, request_id, lock=True)
            self._require_status(row, RequestStatus.PENDING)
            self._require_approver(row, user_id, verb="deny", eligible=eligible)
            self._transition(
                session,
                row,
                RequestStatus.PENDING,
                RequestStatus.DENIED,
                decided_at=now,
                decided_by=user_id,
                deny_reason=reason,
            )
            self._audit(session, row, user_id, AccessAudit.DENIED, {"reason": reason})
            self._notify(session, row, Notice.DENIED)
            return self._snapshot(session, row)

    def retry(self, request_id: int, user_id: str) -> AccessRequest:
        """Try a failed grant again (the request's approvers and admins may)."""
        allowed = user_id in self._eligible_for(request_id) or self.is_admin(user_id)  # no lookup for approvers
        now = self.clock()
        with _busy_means(NOTHING_SAVED), self.db.session() as session:
            row = self._row(session, request_id, lock=True)
            self._require_status(row, RequestStatus.FAILED)
            if not allowed:
                raise NotAllowed("Only this request's approvers or an accessbot admin can retry it.")
            self._transition(session, row, RequestStatus.FAILED, RequestStatus.GRANTING, granting_since=now)
        return self._grant(request_id, user_id)

    def revoke(self, request_id: int, user_id: str) -> AccessRequest:
        """End an active grant now: delete the attribute, then mark the request revoked."""
        with self.db.session() as session:
            row = self._row(session, request_id)
            self._require_status(row, RequestStatus.GRANTED)
            allowed = user_id == row.requester_id or self._is_approver(row, user_id) or self.is_admin(user_id)
            if not allowed:
                raise NotAllowed("Only the requester, the approvers or an accessbot admin can revoke this access.")
            device_id, attribute = row.device_id, row.attribute
        # Already gone (expired a moment ago, or removed by hand): revoking is still right.
        with contextlib.suppress(NotFound):
            self.tailnet.delete_attribute(
                device_id, attribute, actor=Actor(user_id), comment=f"revoked via accessbot by {user_id}"
            )
        now = self.clock()
        with self.db.session() as session:
            row = self._row(session, request_id, lock=True)
            self._transition(
                session,
                row,
                RequestStatus.GRANTED,
                RequestStatus.REVOKED,
                ended_at=now,
                ended_by=user_id,
            )
            self._audit(session, row, user_id, AccessAudit.REVOKED, {})
            self._notify(session, row, Notice.REVOKED, {"by": user_id})
            return self._snapshot(session, row)

    # -- internals -----------------------------------------------------------------------------------

    def _grant(self, request_id: int, user_id: str) -> AccessRequest:
        """Write the attribute for a request in ``granting``; record granted or failed afterwards."""
        with self.db.session() as session:
            row = self._row(session, request_id)
            approvers = self._approvals(session, row.id) or [user_id]
            expiry = self.clock() + timedelta(seconds=row.duration_seconds)
            comment = grant_comment(row.requester_email or row.requester_id, row.reason, approvers)
            device_id, attribute, value = row.device_id, row.attribute, row.value
            profile = self.config().profile(row.profile_id)
            device_name = row.device_name
        error: str | None = None
        try:
            # the required posture is checked again at approval time: a device that fails now is not granted
            error = self.posture_problem(profile, device_id, device_name) if profile else None
            if error is None:
                self.tailnet.set_attribute(
                    device_id, attribute, value, actor=Actor(user_id), expiry=expiry, comment=comment
                )
        except TailnetError as exc:
            error = exc.message
        except Exception as exc:  # an unexpected failure must still leave a retryable request
            log.exception("granting request %s failed", request_id)
            error = f"unexpected error: {exc.__class__.__name__}"
        now = self.clock()
        with _busy_means(_unsettled(request_id, written=error is None)), self.db.session() as session:
            row = self._row(session, request_id, lock=True)
            if error is not None:
                self._transition(
                    session,
                    row,
                    RequestStatus.GRANTING,
                    RequestStatus.FAILED,
                    last_error=error,
                    granting_since=None,
                )
                self._audit(session, row, user_id, AccessAudit.GRANT_FAILED, {"error": error})
                self._notify(session, row, Notice.FAILED, {"error": error})
                return self._snapshot(session, row)
            self._transition(
                session,
                row,
                RequestStatus.GRANTING,
                RequestStatus.GRANTED,
                granted_at=now,
                expires_at=expiry,
                last_error=None,
                granting_since=None,
            )
            self._supersede(session, row, now)
            self._audit(session, row, user_id, AccessAudit.GRANTED, {"expires_at": expiry.isoformat()})
            self._notify(session, row, Notice.GRANTED)
            return self._snapshot(session, row)

    def _supersede(self, session: Session, row: AccessRequestRow, now: datetime) -> None:
        """Older active grants of the same attribute on the same device end quietly (extended)."""
        session.execute(
            update(AccessRequestRow)
            .where(
                AccessRequestRow.id != row.id,
                AccessRequestRow.device_id == row.device_id,
                AccessRequestRow.attribute == row.attribute,
                AccessRequestRow.status == RequestStatus.GRANTED,
            )
            .values(status=RequestStatus.ENDED, ended_at=now, ended_note=f"extended by request {row.id}")
        )

    def _row(self, session: Session, request_id: int, *, lock: bool = False) -> AccessRequestRow:
        if not 0 < request_id <= MAX_REQUEST_ID:  # beyond the id column (PostgreSQL integer): no such request
            raise RequestNotFound(f"Request {request_id} does not exist.")
        row = session.get(AccessRequestRow, request_id, with_for_update=lock or None, populate_existing=True)
        if row is None:
            raise RequestNotFound(f"Request {request_id} does not exist.")
        return row

    @staticmethod
    def _approvals(session: Session, request_id: int) -> list[str]:
        return list(
            session.scalars(select(VoteRow.approver_id).where(VoteRow.request_id == request_id).order_by(VoteRow.id))
        )

    def _snapshot(self, session: Session, row: AccessRequestRow) -> AccessRequest:
        return AccessRequest.from_row(row, tuple(self._approvals(session, row.id)))

    @staticmethod
    def _require_status(row: AccessRequestRow, status: RequestStatus) -> None:
        if row.status != status:
            raise AlreadyDecided(f"Request {row.id} {_STATUS_WORDS[RequestStatus(row.status)]}.")

    def _is_approver(self, row: AccessRequestRow, user_id: str) -> bool:
        profile = self.config().profile(row.profile_id)
        return profile is not None and user_id in self.eligible_approvers(profile)

    def _eligible_for(self, request_id: int) -> set[str]:
        """The approvers of the request's profile, resolved before any row is locked (Slack may be slow)."""
        with self.db.session() as session:
            profile_id = self._row(session, request_id).profile_id
        profile = self.config().profile(profile_id)
        return self.eligible_approvers(profile) if profile is not None else set()

    def _require_approver(
        self, row: AccessRequestRow, user_id: str, *, verb: str = "approve", eligible: set[str] | None = None
    ) -> None:
        profile = self.config().profile(row.profile_id)
        if profile is None:
            raise NotAllowed(f"The access profile {row.profile_id!r} no longer exists; nobody can {verb} this.")
        if user_id == row.requester_id and not profile.self_approval:
            raise NotAllowed(f"You cannot {verb} your own request.")
        if user_id not in (self.eligible_approvers(profile) if eligible is None else eligible):
            raise NotAllowed(f"You are not an approver for {profile.label()}, so you cannot {verb} this request.")

    @staticmethod
    def _transition(
        session: Session, row: AccessRequestRow, expected: RequestStatus, new: RequestStatus, **values: Any
    ) -> None:
        """Move ``row`` from ``expected`` to ``new`` only if nobody else moved it first."""
        result = session.execute(
            update(AccessRequestRow)
            .where(AccessRequestRow.id == row.id, AccessRequestRow.status == expected)
            .values(status=new, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            current = session.scalar(select(AccessRequestRow.status).where(AccessRequestRow.id == row.id))
            raise AlreadyDecided(f"Request {row.id} {_STATUS_WORDS[RequestStatus(current)]}.")
        session.refresh(row)

    def _audit(
        self,
        session: Session,
        row: AccessRequestRow,
        actor: str,
        action: AccessAudit,
        details: dict[str, Any],
    ) -> None:
        metrics.access_event(session, action)
        audit.record(
            session,
            at=self.clock(),
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
                **details,
            },
        )

    def _notify(
        self, session: Session, row: AccessRequestRow, kind: Notice, payload: dict[str, Any] | None = None
    ) -> None:
        session.add(NotificationRow(request_id=row.id, kind=kind, created_at=self.clock(), payload=payload or {}))


def count_requests(db: Database, status: RequestStatus) -> int:
    """How many requests are in ``status`` (for status pages and tests)."""
    with db.session() as session:
        return session.scalar(select(func.count()).where(AccessRequestRow.status == status)) or 0
