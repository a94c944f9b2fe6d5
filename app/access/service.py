"""Commands of the access flow: submit, approve, deny, retry, revoke.

Every state change goes through ``app.access.transitions``: a conditional UPDATE on the request's status, so
concurrent clicks — in one process or many — act exactly once, with its audit event and its outbox notification
in the same transaction. The attribute is written only after approval, and announced only after the write
succeeded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access import break_glass as glass
from app.access import eligibility, scheduling, transitions
from app.access.errors import NOTHING_SAVED, AlreadyDecided, NotAllowed, SubmissionInvalid, busy_means, unsettled
from app.access.grants import grant_comment
from app.access.identity import Identities, same_login
from app.access.oncall import AutoApproval, OnCall
from app.access.people import Directory
from app.access.queries import approvals, load_request, snapshot
from app.access.read_model import AccessAudit, AccessRequest
from app.access.submission import submission_errors
from app.config.model import Config
from app.config.profiles import Profile
from app.core.clock import Clock, utcnow
from app.db import Database
from app.db.tables.access import AccessRequestRow, RequestStatus, VoteRow
from app.tailnet import Actor, Device, Tailnet
from app.tailnet.errors import NotFound, TailnetError

if TYPE_CHECKING:
    from app.posture.gate import PostureGate

log = logging.getLogger(__name__)


class AccessService:
    """The commands people give about access requests, over the database and a tailnet."""

    def __init__(
        self,
        db: Database,
        tailnet: Tailnet,
        config: Callable[[], Config],
        directory: Directory,
        *,
        clock: Clock = utcnow,
        gate: PostureGate | None = None,
        identities: Identities | None = None,
        oncall: OnCall | None = None,
    ) -> None:
        self.db = db
        self.auto_approval = AutoApproval(db, config, oncall, clock=clock) if oncall is not None else None
        self.identities = identities or Identities(db, config, clock=clock)
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
            return snapshot(session, load_request(session, request_id))

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
        login = self.login_of(user_id)
        with self.db.session() as session:
            row = load_request(session, request_id)
            _require_status(row, RequestStatus.PENDING)
            self._require_approver(row, user_id, verb=verb, approver_login=login)
            if verb == "approve" and user_id in approvals(session, row.id):
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
        starts_at: datetime | None = None,
    ) -> dict[str, str]:
        """Field errors of a request form (empty when it may be submitted). Writes nothing."""
        profile = self.config().profile(profile_id) if profile_id else None
        if profile is None:
            return {"profile": "Choose one of the offered access profiles."}
        login = self.login_of(requester_id, fresh=True)
        if device is None:
            device_problem: str | None = "That device is no longer in the tailnet. Choose another one."
        else:
            problem = eligibility.device_problem(profile, device, login, user_id=requester_id)
            problem = problem or self.posture_problem(profile, device.id, device.short_name)
            device_problem = f"{problem.rstrip('.')}." if problem else None
        errors = submission_errors(
            profile,
            requester_id=requester_id,
            device_problem=device_problem,
            duration=duration,
            approver_ids=approver_ids,
            eligible=self.eligible_approvers(profile),
            reason=reason,
        )
        start = scheduling.start_error(starts_at, now=self.clock(), max_ahead=self.config().schedule_ahead_max)
        if start:
            errors["starts_at"] = start
        if "approver" not in errors and not profile.self_approval and self._twin(requester_id, login, approver_ids):
            errors["approver"] = (
                f"One of the chosen approvers is you under another Slack account (the same Tailscale login {login}); "
                "choose someone else."
            )
        return errors

    def login_of(self, user_id: str, *, fresh: bool = False) -> str | None:
        """The Tailscale login of a Slack user (``app.access.identity``: link > config > domain rule > email)."""
        return self.identities.login_of(user_id, self.directory.email_of(user_id), fresh=fresh)

    def _twin(self, requester_id: str, login: str | None, approver_ids: list[str]) -> bool:
        """Whether a chosen approver other than the requester resolves to the requester's login (the links were
        just read fresh for the requester, so the in-memory map is current)."""
        return bool(login) and any(same_login(self.login_of(a), login) for a in set(approver_ids) - {requester_id})

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
        origin: str = "slack",
        request_client_id: str | None = None,
        break_glass: bool = False,
        starts_at: datetime | None = None,
    ) -> AccessRequest:
        """Store a pending request and queue the approver DMs; ``SubmissionInvalid`` on field errors.

        ``origin`` (``slack``, ``cli``, ``api``) and ``request_client_id`` say where a request outside Slack came from.
        ``break_glass``: no approval; the attribute is written now and every approver told (``app.access.break_glass``).
        """
        errors = self.check_submission(
            requester_id=requester_id,
            profile_id=profile_id,
            device=device,
            duration=duration,
            approver_ids=approver_ids,
            reason=reason,
            starts_at=starts_at,
        )
        if break_glass:
            profile_now = self.config().profile(profile_id)
            errors = glass.submission_errors(profile_now, errors, duration=duration, reason=reason)
            approver_ids = sorted(self.eligible_approvers(profile_now)) if profile_now and not errors else []
            if starts_at is not None:  # break glass is written now: a start would be ignored silently
                errors["starts_at"] = scheduling.BREAK_GLASS_START
        if errors:
            raise SubmissionInvalid(errors)
        assert device is not None and duration is not None
        profile = self.config().profile(profile_id)
        assert profile is not None
        now = self.clock()
        with busy_means(NOTHING_SAVED), self.db.session() as session:
            row = AccessRequestRow(
                status=RequestStatus.PENDING,
                requester_id=requester_id,
                requester_email=self.directory.email_of(requester_id),
                requester_login=self.login_of(requester_id, fresh=True),
                profile_id=profile.id,
                attribute=profile.attribute,
                value=profile.typed_value,
                approvals_required=profile.approvals_required,
                device_id=device.id,
                device_name=device.name,
                device_owner=eligibility.owner_label(device),
                device_os=device.os,
                duration_seconds=int(duration.total_seconds()),
                reason=reason.strip(),
                approver_ids=list(dict.fromkeys(approver_ids)),
                created_at=now,
                starts_at=scheduling.chosen_start(starts_at, now),
                timeout_at=scheduling.review_deadline(
                    now, self.config().request_timeout, scheduling.chosen_start(starts_at, now), duration
                ),
                extends_request_id=extends_request_id,
                origin=origin,
                request_client_id=request_client_id,
            )
            session.add(row)
            session.flush()
            if not break_glass:
                transitions.submitted(session, row, at=self.clock())
                return snapshot(session, row)
            request_id = glass.start(session, row, at=now)
        return self._grant(request_id, requester_id)

    def mark_reviewed(self, request_id: int, user_id: str) -> AccessRequest:
        """An approver of the profile (not the requester) marks a break-glass grant reviewed; only the first counts."""
        eligible = self._eligible_for(request_id)
        login = self.login_of(user_id, fresh=True)  # before the lock: Slack may be slow
        with busy_means(NOTHING_SAVED), self.db.session() as session:
            return glass.review(session, request_id, user_id, eligible=eligible, at=self.clock(), reviewer_login=login)

    # -- decide --------------------------------------------------------------------------------------

    def auto_approve(self, request_id: int) -> AccessRequest:
        """Approve a pending request by on-call schedule if its requester is on call now (``app.access.oncall``),
        then write it like any approval; otherwise it stays with its approvers. A provider that is down is not
        an error here: the request just stays pending."""
        actor = self.auto_approval.decide(request_id) if self.auto_approval is not None else None
        return self._grant(request_id, actor) if actor is not None else self.get(request_id)

    def approve(self, request_id: int, user_id: str) -> AccessRequest:
        """Record ``user_id``'s approval; when enough approvals are in, write the attribute.

        Refuses (``NotAllowed``/``AlreadyDecided``) anyone who is not an eligible approver, who already
        approved, or who is the requester of a profile without self-approval.
        """
        eligible = self._eligible_for(request_id)
        login = self.login_of(user_id, fresh=True)  # before the lock: Slack may be slow
        now = self.clock()
        with busy_means(NOTHING_SAVED), self.db.session() as session:
            row = load_request(session, request_id, lock=True)
            _require_status(row, RequestStatus.PENDING)
            self._require_approver(row, user_id, eligible=eligible, approver_login=login)
            session.add(VoteRow(request_id=row.id, approver_id=user_id, at=now))
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyDecided("You already approved this request.") from None
            votes = approvals(session, row.id)
            details = {"approvals": len(votes)}
            transitions.record(
                session, row, actor=user_id, action=AccessAudit.APPROVED, at=self.clock(), details=details
            )
            if len(votes) < row.approvals_required:
                row = transitions.move_or_refuse(
                    session, transitions.VOTE, row.id, actor=user_id, at=self.clock(), payload={"approver": user_id}
                )
                return snapshot(session, row)
            if scheduling.starts_later(row.starts_at, now):  # written at its start by the lifecycle
                return snapshot(session, scheduling.schedule(session, row, user_id, now))
            decided = {"decided_at": now, "decided_by": user_id, "granting_since": now}
            transitions.move_or_refuse(session, transitions.APPROVE, row.id, actor=user_id, at=now, values=decided)
        return self._grant(request_id, user_id)

    def deny(self, request_id: int, user_id: str, reason: str | None = None) -> AccessRequest:
        """Deny a pending request (any eligible approver may)."""
        eligible = self._eligible_for(request_id)
        login = self.login_of(user_id, fresh=True)
        now = self.clock()
        reason = (reason or "").strip()[:500] or None
        with busy_means(NOTHING_SAVED), self.db.session() as session:
            row = load_request(session, request_id, lock=True)
            _require_status(row, RequestStatus.PENDING)
            self._require_approver(row, user_id, verb="deny", eligible=eligible, approver_login=login)
            row = transitions.move_or_refuse(
                session,
                transitions.DENY,
                row.id,
                actor=user_id,
                at=self.clock(),
                values={"decided_at": now, "decided_by": user_id, "deny_reason": reason},
                details={"reason": reason},
            )
            return snapshot(session, row)

    def retry(self, request_id: int, user_id: str) -> AccessRequest:
        """Try a failed grant again (the request's approvers and admins may)."""
        allowed = user_id in self._eligible_for(request_id) or self.is_admin(user_id)  # no lookup for approvers
        now = self.clock()
        with busy_means(NOTHING_SAVED), self.db.session() as session:
            row = load_request(session, request_id, lock=True)
            _require_status(row, RequestStatus.FAILED)
            if not allowed:
                raise NotAllowed("Only this request's approvers or an accessbot admin can retry it.")
            values = {"granting_since": now}
            transitions.move_or_refuse(session, transitions.RETRY, row.id, actor=user_id, at=now, values=values)
        return self._grant(request_id, user_id)

    def revoke(self, request_id: int, user_id: str) -> AccessRequest:
        """End an active grant now: delete the attribute, then mark the request revoked (a scheduled request
        before its start: nothing to delete)."""
        with self.db.session() as session:
            row = load_request(session, request_id)
            if row.status != RequestStatus.SCHEDULED:
                _require_status(row, RequestStatus.GRANTED)
            allowed = user_id == row.requester_id or self._is_approver(row, user_id) or self.is_admin(user_id)
            if not allowed:
                raise NotAllowed("Only the requester, the approvers or an accessbot admin can revoke this access.")
            if row.status == RequestStatus.SCHEDULED:
                return snapshot(session, scheduling.unschedule(session, request_id, user_id, self.clock()))
            device_id, attribute = row.device_id, row.attribute
        # Already gone (expired a moment ago, or removed by hand): revoking is still right.
        with contextlib.suppress(NotFound):
            self.tailnet.delete_attribute(
                device_id, attribute, actor=Actor(user_id), comment=f"revoked via accessbot by {user_id}"
            )
        now = self.clock()
        with self.db.session() as session:
            load_request(session, request_id, lock=True)
            row = transitions.move_or_refuse(
                session,
                transitions.REVOKE,
                request_id,
                actor=user_id,
                at=self.clock(),
                values={"ended_at": now, "ended_by": user_id},
                payload={"by": user_id},
            )
            return snapshot(session, row)

    # -- granting ------------------------------------------------------------------------------------

    def _grant(self, request_id: int, user_id: str) -> AccessRequest:
        """Write the attribute for a request in ``granting``; record granted or failed afterwards."""
        with self.db.session() as session:
            row = load_request(session, request_id)
            approvers = approvals(session, row.id) or [f"{user_id} via break glass" if row.break_glass else user_id]
            expiry = scheduling.grant_expiry(row.starts_at, timedelta(seconds=row.duration_seconds), self.clock())
            window = scheduling.window_problem(row.starts_at, expiry, self.clock())
            comment = grant_comment(row.requester_email or row.requester_id, row.reason, approvers)
            device_id, attribute, value = row.device_id, row.attribute, row.value
            profile = self.config().profile(row.profile_id)
            device_name = row.device_name
            requester = (row.requester_id, row.requester_email)
        error: str | None = None
        try:
            # eligibility and the required posture are checked again before the write: a device that fails
            # now (re-read from the tailnet) is not granted; the request fails with the reason
            error = self.device_recheck(profile, device_id, *requester) if profile else None
            error = error or (self.posture_problem(profile, device_id, device_name) if profile else None)
            error = error or window  # a scheduled window that has ended is not written
            if error is None:
                self.tailnet.set_attribute(
                    device_id, attribute, value, actor=Actor(user_id), expiry=expiry, comment=comment
                )
        except TailnetError as exc:
            error = exc.message
        except Exception as exc:  # an unexpected failure must still leave a retryable request
            log.exception("granting request %s failed", request_id)
            error = f"unexpected error: {exc.__class__.__name__}"
        return self._settle(request_id, user_id, expiry, error)

    def grant_started(self, request_id: int, actor: str) -> AccessRequest:
        """Write a scheduled request the lifecycle moved to ``granting`` at its start (``app.access.scheduling``)."""
        return self._grant(request_id, actor)

    def _settle(self, request_id: int, user_id: str, expiry: datetime, error: str | None) -> AccessRequest:
        """Record the end of a grant's write: ``failed`` with ``error``, or ``granted`` until ``expiry``."""
        now = self.clock()
        with busy_means(unsettled(request_id, written=error is None)), self.db.session() as session:
            load_request(session, request_id, lock=True)
            if error is not None:
                row = transitions.move_or_refuse(
                    session,
                    transitions.FAIL,
                    request_id,
                    actor=user_id,
                    at=self.clock(),
                    values={"last_error": error, "granting_since": None},
                    details={"error": error},
                    payload={"error": error},
                )
                return snapshot(session, row)
            row = transitions.move_or_refuse(
                session,
                transitions.GRANT,
                request_id,
                actor=user_id,
                at=self.clock(),
                values={"granted_at": now, "expires_at": expiry, "last_error": None, "granting_since": None},
                details={"expires_at": expiry.isoformat()},
            )
            self._supersede(session, row, user_id, now)
            return snapshot(session, row)

    @staticmethod
    def _supersede(session: Session, row: AccessRequestRow, user_id: str, now: datetime) -> None:
        """Older active grants of the same attribute on the same device end quietly (extended)."""
        older = session.scalars(
            select(AccessRequestRow.id).where(
                AccessRequestRow.id != row.id,
                AccessRequestRow.device_id == row.device_id,
                AccessRequestRow.attribute == row.attribute,
                AccessRequestRow.status.in_(transitions.SUPERSEDE.sources),
            )
        ).all()
        values = {"ended_at": now, "ended_note": f"extended by request {row.id}"}
        for older_id in older:
            transitions.move(session, transitions.SUPERSEDE, older_id, actor=user_id, at=now, values=values)

    def device_recheck(self, profile: Profile, device_id: str, requester_id: str, email: str | None) -> str | None:
        """Why the device, as the tailnet reports it now, is not eligible for the requester (``None``: it is).

        The login is resolved now (a link removed since the request counts) from the email stored with it.
        """
        if eligibility.any_device(profile):
            return None
        device = self.tailnet.get_device(device_id)
        login = self.identities.login_of(requester_id, email, fresh=True)
        problem = eligibility.device_problem(profile, device, login, user_id=requester_id)
        return f"the device is not eligible: {problem}" if problem else None

    # -- who may act ---------------------------------------------------------------------------------

    def _is_approver(self, row: AccessRequestRow, user_id: str) -> bool:
        profile = self.config().profile(row.profile_id)
        return profile is not None and user_id in self.eligible_approvers(profile)

    def _eligible_for(self, request_id: int) -> set[str]:
        """The approvers of the request's profile, resolved before any row is locked (Slack may be slow)."""
        with self.db.session() as session:
            profile_id = load_request(session, request_id).profile_id
        profile = self.config().profile(profile_id)
        return self.eligible_approvers(profile) if profile is not None else set()

    def _require_approver(
        self,
        row: AccessRequestRow,
        user_id: str,
        *,
        verb: str = "approve",
        eligible: set[str] | None = None,
        approver_login: str | None = None,
    ) -> None:
        """Refuse unless ``user_id`` may decide; ``approver_login`` equal to the requester's counts as the requester."""
        profile = self.config().profile(row.profile_id)
        if profile is None:
            raise NotAllowed(f"The access profile {row.profile_id!r} no longer exists; nobody can {verb} this.")
        if user_id == row.requester_id and not profile.self_approval:
            raise NotAllowed(f"You cannot {verb} your own request.")
        if not profile.self_approval and same_login(approver_login, row.requester_login or row.requester_email):
            raise NotAllowed(
                f"You cannot {verb} this request: it is your own (this Slack account has the requester's "
                f"Tailscale login {approver_login})."
            )
        if user_id not in (self.eligible_approvers(profile) if eligible is None else eligible):
            raise NotAllowed(f"You are not an approver for {profile.label()}, so you cannot {verb} this request.")


def _require_status(row: AccessRequestRow, status: RequestStatus) -> None:
    """Refuse (``AlreadyDecided``) unless the request is in ``status``: a friendlier early check than the UPDATE's."""
    if row.status != status:
        raise transitions.already_decided(row.id, row.status)
