"""Requests made outside Slack (the CLI, the request API): submit, read, list and cancel.

The requester is always a Slack user, because the approvals and the DMs happen in Slack. A submission goes
through ``AccessService.submit`` with its ``origin``, so it is validated, audited and announced to the approvers
exactly like one from the Slack modal. Cancelling is a transition (``transitions.CANCEL``): audited, and the
approvers' DMs are updated through the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.access import transitions
from app.access.errors import NOTHING_SAVED, RequestNotFound, SubmissionInvalid, busy_means
from app.access.queries import load_request, snapshot
from app.access.read_model import AccessRequest
from app.access.service import AccessService
from app.core.timefmt import format_rfc3339
from app.db import Database, audit
from app.db.audit import AuditEvent
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.tailnet.errors import DeviceNotFound, InvalidRequest
from app.tailnet.models import Device
from app.tailnet.service import resolve_device

MAX_LIST = 500
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")
CANCELLABLE = (RequestStatus.PENDING, RequestStatus.SCHEDULED)


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A request with where it came from (the read model of the flow does not carry these)."""

    request: AccessRequest
    origin: str
    request_client_id: str | None
    ended_by: str | None


@dataclass(frozen=True, slots=True)
class OutsideRequest:
    """What a request from the CLI or the API asks for, before the device is resolved."""

    requester_id: str
    profile_id: str
    device_ref: str
    duration: timedelta | None
    reason: str
    approver_ids: Sequence[str] = ()
    """Empty: every eligible approver of the profile (but the requester, unless the profile allows self-approval)."""
    starts_at: datetime | None = None
    """Scheduled access: when the attribute is to be written (``None``: as soon as it is approved)."""


def _stored(session: Session, row: AccessRequestRow) -> StoredRequest:
    return StoredRequest(snapshot(session, row), row.origin, row.request_client_id, row.ended_by)


def submit(
    access: AccessService, ask: OutsideRequest, *, origin: str, request_client_id: str | None = None
) -> StoredRequest:
    """Submit ``ask`` as a pending request from ``origin``; ``SubmissionInvalid`` names each field that is wrong
    (all of them at once: nothing is stored unless every field is right)."""
    profile = access.config().profile(ask.profile_id)
    if profile is None:
        offered = ", ".join(p.id for p in access.config().profiles) or "none configured"
        raise SubmissionInvalid({"profile": f"No profile {ask.profile_id!r}; profiles: {offered}."})
    if not _USER_ID.fullmatch(ask.requester_id) or access.directory.email_of(ask.requester_id) is None:
        # the other checks (approvers, the requester's devices) depend on who asks: nothing more to say yet
        problem = f"{ask.requester_id!r} is not a Slack user of this workspace (give an id like U012AB3CD)."
        raise SubmissionInvalid({"requester": problem})
    errors: dict[str, str] = {}
    device, device_error = _device(access, ask.device_ref)
    approvers = list(ask.approver_ids) or default_approvers(access, ask.profile_id, ask.requester_id)
    checked = access.check_submission(
        requester_id=ask.requester_id,
        profile_id=profile.id,
        device=device,
        duration=ask.duration,
        approver_ids=approvers,
        reason=ask.reason,
        starts_at=ask.starts_at,
    )
    errors.update(checked)
    if device_error:
        errors["device"] = device_error
    if errors:
        raise SubmissionInvalid(errors)
    created = access.submit(
        requester_id=ask.requester_id,
        profile_id=profile.id,
        device=device,
        duration=ask.duration,
        approver_ids=approvers,
        reason=ask.reason,
        origin=origin,
        request_client_id=request_client_id,
        starts_at=ask.starts_at,
    )
    return get(access.db, created.id)


def _device(access: AccessService, ref: str) -> tuple[Device | None, str | None]:
    """The device ``ref`` names (id, nodeId, name or hostname), or why there is none."""
    if not ref.strip():
        return None, "Name the device: its id, nodeId or name."
    try:
        return resolve_device(access.tailnet, ref), None
    except (DeviceNotFound, InvalidRequest) as exc:
        return None, f"{exc.message}."


def default_approvers(access: AccessService, profile_id: str, requester_id: str) -> list[str]:
    """Everyone who may approve the profile, but the requester when the profile does not allow self-approval."""
    profile = access.config().profile(profile_id)
    if profile is None:
        return []
    eligible = access.eligible_approvers(profile)
    if not profile.self_approval:
        eligible.discard(requester_id)
    return sorted(eligible)


def get(db: Database, request_id: int, *, request_client_id: str | None = None) -> StoredRequest:
    """The request as stored; with ``request_client_id``, only if that client made it (else ``RequestNotFound``)."""
    with db.session() as session:
        row = load_request(session, request_id)
        if request_client_id is not None and row.request_client_id != request_client_id:
            raise RequestNotFound(f"Request {request_id} does not exist.")
        return _stored(session, row)


def listing(
    db: Database, *, statuses: Sequence[RequestStatus] = (), requester: str | None = None, limit: int = 50
) -> list[StoredRequest]:
    """The newest requests first, filtered by status and requester (a Slack user id, or an email)."""
    stmt = select(AccessRequestRow).order_by(AccessRequestRow.created_at.desc(), AccessRequestRow.id.desc())
    if statuses:
        stmt = stmt.where(AccessRequestRow.status.in_(statuses))
    if requester is not None:
        wanted = requester.strip()
        if "@" in wanted:
            stmt = stmt.where(func.lower(AccessRequestRow.requester_email) == wanted.lower())
        else:
            stmt = stmt.where(AccessRequestRow.requester_id == wanted)
    with db.session() as session:
        rows = list(session.scalars(stmt.limit(max(1, min(limit, MAX_LIST)))))
        return [_stored(session, row) for row in rows]


def trail(db: Database, request_id: int) -> list[AuditEvent]:
    """The request's audit events in time order."""
    with db.session() as session:
        return audit.query(session, target=f"request/{request_id}")


def cancel(
    db: Database, request_id: int, *, actor: str, at: datetime, request_client_id: str | None = None
) -> StoredRequest:
    """Cancel a pending or scheduled request (``AlreadyDecided`` saying where it stands otherwise).

    ``request_client_id``: a request client may cancel only the requests it made (others do not exist for it).
    """
    with busy_means(NOTHING_SAVED), db.session() as session:
        row = load_request(session, request_id, lock=True)
        if request_client_id is not None and row.request_client_id != request_client_id:
            raise RequestNotFound(f"Request {request_id} does not exist.")
        moved = transitions.move_or_refuse(
            session,
            transitions.CANCEL,
            request_id,
            actor=actor,
            at=at,
            values={"ended_at": at, "ended_by": actor[:32]},
            payload={"by": actor},
        )
        return _stored(session, moved)


def _time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None


def to_json(stored: StoredRequest) -> dict[str, Any]:
    """The request as the request API and ``accessbot requests show --json`` give it."""
    r = stored.request
    return {
        "id": r.id,
        "status": str(r.status),
        "origin": stored.origin,
        "request_client": stored.request_client_id,
        "requester": r.requester_id,
        "requester_email": r.requester_email,
        "profile": r.profile_id,
        "attribute": r.attribute,
        "value": r.value,
        "device": {"id": r.device_id, "name": r.device_name, "owner": r.device_owner, "os": r.device_os},
        "duration_seconds": int(r.duration.total_seconds()),
        "starts_at": _time(r.starts_at),
        "reason": r.reason,
        "approvers": list(r.approver_ids),
        "approvals": list(r.approvals),
        "approvals_required": r.approvals_required,
        "created_at": _time(r.created_at),
        "timeout_at": _time(r.timeout_at),
        "decided_at": _time(r.decided_at),
        "decided_by": r.decided_by,
        "deny_reason": r.deny_reason,
        "granted_at": _time(r.granted_at),
        "expires_at": _time(r.expires_at),
        "ended_at": _time(r.ended_at),
        "ended_by": stored.ended_by,
        "last_error": r.last_error,
    }
