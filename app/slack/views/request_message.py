"""Messages about one request, rendered from its stored state (never from a button's payload).

The same request renders differently for its approvers (Approve / Deny / Retry), its requester and the
notify channel; every copy is re-rendered and updated whenever the request changes.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.access.read_model import AccessRequest
from app.core.timefmt import format_duration
from app.db.tables.access import RequestStatus
from app.posture.unlock import Unlock
from app.slack.ids import ActionId, BlockId
from app.slack.views import break_glass
from app.slack.views.auto_approval import approved_by
from app.slack.views.blockkit import (
    Block,
    actions,
    button,
    context,
    escape,
    fields,
    message_blocks,
    section,
    user,
    when,
)
from app.slack.views.unlock import unlock_blocks

LABEL_LIMIT = 200
"""Room for a profile label or device name inside a sentence (escaped): a 3,000-character description must
not crowd out the rest of the message, whose date tokens and mentions are never cut."""
REASON_LIMIT = 1000
"""Room for a reason, deny reason or note (escaped)."""
ERROR_LIMIT = 1000
"""Room for an error text (escaped)."""


class Audience(StrEnum):
    """Who a message is for."""

    APPROVER = "approver"
    REQUESTER = "requester"
    CHANNEL = "channel"


def attribute_text(request: AccessRequest) -> str:
    """``custom:prodAccess = true`` as code."""
    value = request.value if isinstance(request.value, str) else json.dumps(request.value)
    return f"`{escape(request.attribute, LABEL_LIMIT)} = {escape(str(value), LABEL_LIMIT)}`"


def summary_fields(request: AccessRequest, profile_label: str) -> Block:
    """The request's facts as a two-column section (each field cut to Slack's 2,000 by ``fields``)."""
    owner = owner_line(request)
    os_ = f", {escape(request.device_os, LABEL_LIMIT)}" if request.device_os else ""
    return fields(
        [
            f"*Requester*\n{user(request.requester_id)}",
            f"*Profile*\n{escape(profile_label)}",
            f"*Device*\n{escape(request.device_name, LABEL_LIMIT)}{os_}{owner}",
            f"*Attribute*\n{attribute_text(request)}",
            f"*Duration*\n{format_duration(request.duration)}{window_text(request)}",
            f"*Reason*\n{escape(request.reason)}",
        ]
    )


def owner_line(request: AccessRequest) -> str:
    """The device owner's login and whether it is the requester's (their login when they asked, else email)."""
    if not request.device_owner:
        return ""
    owner = escape(request.device_owner, LABEL_LIMIT)
    requester = request.requester_login or request.requester_email
    if not requester:
        return f"\nowner {owner}"
    if requester.casefold() == request.device_owner.strip().casefold():
        return f"\n{owner} (the requester's own device)"
    return f"\n(not the requester's: owned by {owner})"


def window_text(request: AccessRequest) -> str:
    """A scheduled request's window under its duration (nothing for one that starts on approval)."""
    if request.starts_at is None or request.window_end is None:
        return ""
    return f"\nfrom {when(request.starts_at)} until {when(request.window_end)}"


def status_line(request: AccessRequest) -> str:
    """One sentence saying where the request stands."""
    glass = break_glass.status_line(request) if request.break_glass else None
    if glass is not None:
        return glass
    approvers = approved_by(request, ", ".join(user(a) for a in request.approvals) or "nobody yet")
    match request.status:
        case RequestStatus.PENDING:
            asked = ", ".join(user(a) for a in request.approver_ids)
            progress = (
                f" ({len(request.approvals)} of {request.approvals_required} approvals: {approvers})"
                if request.approvals_required > 1
                else ""
            )
            deadline = when(request.timeout_at)
            return f":hourglass_flowing_sand: Waiting for {asked}{progress}. Expires unreviewed {deadline}."
        case RequestStatus.GRANTING:
            return f":gear: Approved by {approvers}; granting now…"
        case RequestStatus.GRANTED:
            assert request.expires_at is not None
            return f":white_check_mark: Approved by {approvers}. Access granted until {when(request.expires_at)}."
        case RequestStatus.FAILED:
            error = escape(request.last_error or "unknown error", ERROR_LIMIT)
            return (
                f":warning: Approved by {approvers}, but writing the attribute failed: {error}. "
                "Nothing was granted; an approver or admin can retry."
            )
        case RequestStatus.DENIED:
            why = f": {escape(request.deny_reason, REASON_LIMIT)}" if request.deny_reason else "."
            return f":no_entry: Denied by {user(request.decided_by or '?')}{why}"
        case RequestStatus.EXPIRED:
            return ":zzz: Nobody reviewed this request in time, so it expired. Request again if you still need it."
        case RequestStatus.REVOKED:
            by = f" by {user(request.ended_by)}" if request.ended_by else ""
            at = f" {when(request.ended_at)}" if request.ended_at else ""
            return f":lock: Access revoked{by}{at}."
        case RequestStatus.ENDED:
            note = f" ({escape(request.ended_note, REASON_LIMIT)})" if request.ended_note else ""
            at = when(request.ended_at) if request.ended_at else "now"
            return f":checkered_flag: Access ended {at}{note}."
        case RequestStatus.SCHEDULED:
            assert request.starts_at is not None and request.window_end is not None
            return (
                f":calendar: Approved by {approvers}. Access starts {when(request.starts_at)} and lasts until "
                f"{when(request.window_end)}; it can be revoked before then."
            )
        case RequestStatus.CANCELLED:
            by = f" by {_who(request.ended_by)}" if request.ended_by else ""
            return f":heavy_multiplication_x: Request cancelled{by} before it was granted; nothing was written."
    return str(request.status)


def request_message(
    request: AccessRequest, *, audience: Audience, profile_label: str, unlock: Unlock | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks of a message about ``request`` for ``audience``; the approvers' copy lists what
    the attribute would ``unlock`` on the device (when known)."""
    label = escape(profile_label, LABEL_LIMIT)
    if audience is Audience.REQUESTER:
        head = f"Your request #{request.id} for *{label}* access"
    else:
        head = f"{user(request.requester_id)} requests *{label}* access (#{request.id})"
    if request.break_glass:
        head = f":rotating_light: *Break glass* · {head}"
    blocks: list[Block] = [
        section(head),
        summary_fields(request, profile_label),
    ]
    if unlock is not None and audience is Audience.APPROVER:
        blocks += unlock_blocks(unlock)
    blocks.append(section(status_line(request)))
    if request.break_glass:
        blocks.append(context(break_glass.review_line(request)))
    buttons = _buttons(request, audience) + break_glass.review_buttons(
        request, for_approver=audience is Audience.APPROVER
    )
    if buttons:
        blocks.append(actions(*buttons, block_id=f"{BlockId.REQUEST_ACTIONS}:{request.id}"))
    blocks.append(context(f"Request #{request.id} · asked {when(request.created_at)} · {_asked_how(request)}"))
    text = f"Access request #{request.id} ({request.status}): {label} on {escape(request.device_name, LABEL_LIMIT)}"
    return text, message_blocks(blocks)


def _buttons(request: AccessRequest, audience: Audience) -> list[Block]:
    value = str(request.id)
    if audience is Audience.APPROVER and request.status == RequestStatus.PENDING:
        return [
            button("Approve", ActionId.APPROVE, value, "primary"),
            button("Deny", ActionId.DENY, value, "danger"),
        ]
    if audience in (Audience.APPROVER, Audience.REQUESTER) and request.status == RequestStatus.SCHEDULED:
        return [button("Revoke", ActionId.REVOKE, value, "danger")]  # before its start: nothing written yet
    if audience is Audience.APPROVER and request.status == RequestStatus.FAILED:
        return [button("Retry", ActionId.RETRY, value, "primary")]
    if audience in (Audience.APPROVER, Audience.REQUESTER) and request.status == RequestStatus.GRANTED:
        out = [button("Revoke", ActionId.REVOKE, value, "danger")]
        if audience is Audience.REQUESTER:
            out.insert(0, button("Extend", ActionId.EXTEND, value))
        return out
    return []


def notice(
    request: AccessRequest, kind: str, profile_label: str, extra: dict[str, Any] | None = None
) -> tuple[str, list[dict[str, Any]]] | None:
    """A new direct message to the requester for an outbox notification kind (``None``: no DM)."""
    extra = extra or {}
    label = escape(profile_label, LABEL_LIMIT)
    device = escape(request.device_name, LABEL_LIMIT)
    match kind:
        case "granted":
            assert request.expires_at is not None
            until = when(request.expires_at)
            text = f":white_check_mark: Your *{label}* access on *{device}* is granted until {until}."
        case "failed":
            text = (
                f":warning: Your request #{request.id} was approved, but writing the attribute failed: "
                f"{escape(request.last_error or 'unknown error', ERROR_LIMIT)}. Nothing was granted yet; "
                "your approvers can retry."
            )
        case "denied":
            why = f" Reason: {escape(request.deny_reason, REASON_LIMIT)}" if request.deny_reason else ""
            text = f":no_entry: {user(request.decided_by or '?')} denied your *{label}* request #{request.id}.{why}"
        case "revoked":
            if extra.get("by") == request.requester_id:
                return None
            text = f":lock: Your *{label}* access on *{device}* was revoked by {user(str(extra.get('by', '?')))}."
            if request.granted_at is None:  # a scheduled request, before its start
                text = text[:-1] + " before it started."
        case "request_expired":
            text = f":zzz: Nobody reviewed your *{label}* request #{request.id} in time, so it expired."
        case "ended":
            if request.ended_note and request.ended_note.startswith("extended"):
                return None
            text = f":checkered_flag: Your *{label}* access on *{device}* has ended."
        case "cancelled":
            if extra.get("by") == request.requester_id:
                return None
            by = _who(extra.get("by"))
            text = f":heavy_multiplication_x: Your *{label}* request #{request.id} was cancelled by {by}."
        case "break_glass_reviewed":
            text = break_glass.reviewed_notice(request, profile_label, str(extra.get("by", "?")))
        case "scheduled" | "starts_soon" | "start_missed":
            text = scheduled_notice(request, kind, label, device)
        case "reminder":
            assert request.expires_at is not None
            text = f":alarm_clock: Your *{label}* access on *{device}* ends {when(request.expires_at)}."
            blocks = [section(text), actions(button("Extend", ActionId.EXTEND, str(request.id), "primary"))]
            return _plain(text), blocks
        case _:
            return None
    return _plain(text), [section(text)]


def scheduled_notice(request: AccessRequest, kind: str, label: str, device: str) -> str:
    """The requester's DM about scheduled access: approved ahead, starting soon, or its window missed."""
    assert request.starts_at is not None and request.window_end is not None
    start, end = when(request.starts_at), when(request.window_end)
    if kind == "scheduled":
        by = ", ".join(user(a) for a in request.approvals) or user(request.decided_by or "?")
        return (
            f":calendar: {by} approved your *{label}* request #{request.id}. Access on *{device}* starts {start} "
            f"and lasts until {end}; I'll message you when it is granted."
        )
    if kind == "starts_soon":
        return f":alarm_clock: Your *{label}* access on *{device}* starts {start} (until {end})."
    return (
        f":warning: Your scheduled *{label}* access on *{device}* (#{request.id}) never started: its whole window, "
        f"{start} to {end}, passed while accessbot could not act. Nothing was written; request again if you still "
        "need it."
    )


def channel_post(request: AccessRequest, profile_label: str) -> tuple[str, list[dict[str, Any]]]:
    """The notify channel's announcement of a grant."""
    assert request.expires_at is not None
    if request.break_glass:
        glass = break_glass.channel_text(request, profile_label)
        return _plain(glass), [section(glass)]
    approvers = approved_by(request, ", ".join(user(a) for a in request.approvals))
    text = (
        f":key: {user(request.requester_id)} was granted *{escape(profile_label, LABEL_LIMIT)}* on "
        f"*{escape(request.device_name, LABEL_LIMIT)}* until {when(request.expires_at)} (approved by {approvers}). "
        f"Reason: {escape(request.reason, REASON_LIMIT)}"
    )
    return _plain(text), [section(text)]


def _asked_how(request: AccessRequest) -> str:
    """How the request was made: in Slack, or on the requester's behalf from the CLI or the request API (so an
    approver knows who really typed it)."""
    if request.origin == "cli":
        return "via the accessbot CLI"
    if request.origin == "api":
        return f"via the request API (client `{escape(request.request_client_id or '?', LABEL_LIMIT)}`)"
    return "via accessbot"


def _who(actor: object) -> str:
    """A Slack user as a mention; an operator (``cli:alice``) or a request client (``client:…``) as code."""
    text = str(actor or "?")
    return user(text) if re.fullmatch(r"[UW][A-Z0-9]{2,}", text) else f"`{escape(text, LABEL_LIMIT)}`"


def _plain(text: str) -> str:
    """A notification fallback without mrkdwn date tokens."""
    return re.sub(r"<!date\^\d+\^[^|]*\|([^>]*)>", r"\1", text).replace("*", "")


def time_left(expires_at: datetime, now: datetime) -> str:
    """``1h5m left`` or ``expired``."""
    left = expires_at - now
    return f"{format_duration(left)} left" if left.total_seconds() > 0 else "expired"
