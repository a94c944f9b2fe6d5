"""The App Home tab: my active grants, my open requests, approvals waiting for me."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from app.access.models import RequestStatus
from app.access.requests import AccessRequest
from app.slack.ids import ActionId
from app.slack.views.common import button, context, escape, plain, section, user, when
from app.slack.views.request_message import attribute_text, status_line, time_left
from app.timefmt import format_duration

MAX_PER_LIST = 15  # 3 lists of up to 2 blocks per item + headers stays under Slack's 100 blocks


def home_view(
    *,
    active: list[AccessRequest],
    open_requests: list[AccessRequest],
    awaiting: list[AccessRequest],
    label: Callable[[str], str],
    now: datetime,
    notices: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The home tab. ``label`` maps a profile id to its display name; ``notices`` (for admins: channel problems,
    at most 7 blocks) go last."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Tailscale access", 150)},
        {
            "type": "actions",
            "elements": [button("Request access", ActionId.NEW_REQUEST, "new", "primary")],
        },
        {"type": "header", "text": plain("Your active access", 150)},
    ]
    if not active:
        blocks.append(context("You have no active access right now."))
    for grant in active[:MAX_PER_LIST]:
        assert grant.expires_at is not None
        blocks.append(
            section(
                f"*{escape(label(grant.profile_id))}* on *{escape(grant.device_name)}* · {attribute_text(grant)}\n"
                f"Until {when(grant.expires_at)} ({time_left(grant.expires_at, now)})"
            )
        )
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button("Extend", ActionId.EXTEND, str(grant.id)),
                    button("Revoke", ActionId.REVOKE, str(grant.id), "danger"),
                ],
            }
        )
    blocks.append({"type": "header", "text": plain("Your open requests", 150)})
    if not open_requests:
        blocks.append(context("No requests are waiting."))
    for request in open_requests[:MAX_PER_LIST]:
        blocks.append(
            section(
                f"*#{request.id} {escape(label(request.profile_id))}* on *{escape(request.device_name)}* "
                f"for {format_duration(request.duration)}\n{status_line(request)}"
            )
        )
    blocks.append({"type": "header", "text": plain("Waiting for your approval", 150)})
    if not awaiting:
        blocks.append(context("Nothing is waiting for you."))
    for request in awaiting[:MAX_PER_LIST]:
        blocks.append(
            section(
                f"*#{request.id}* {user(request.requester_id)} asks for *{escape(label(request.profile_id))}* on "
                f"*{escape(request.device_name)}* for {format_duration(request.duration)}: {escape(request.reason)}"
            )
        )
        if request.status == RequestStatus.PENDING:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        button("Approve", ActionId.APPROVE, str(request.id), "primary"),
                        button("Deny", ActionId.DENY, str(request.id), "danger"),
                    ],
                }
            )
    blocks += notices
    return {"type": "home", "blocks": blocks}
