"""The App Home tab: my active grants, my open requests, approvals waiting for me."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from app.access.read_model import AccessRequest
from app.access.tables import RequestStatus
from app.core.timefmt import format_duration
from app.slack.ids import ActionId
from app.slack.views.blockkit import (
    Block,
    actions,
    button,
    cap_groups,
    context,
    escape,
    header,
    home,
    section,
    user,
    when,
)
from app.slack.views.request_message import LABEL_LIMIT, REASON_LIMIT, attribute_text, status_line, time_left

MAX_PER_LIST = 15
"""Items shown per list: with headers and "…and N more" lines the lists take 83 blocks at most, 90 with an
admin's notices, under Slack's 100 (``home`` still caps the whole tab)."""


def _room(blocks_per_item: int) -> int:
    """Blocks one list may take: ``MAX_PER_LIST`` items and the "…and N more" line."""
    return MAX_PER_LIST * blocks_per_item + 1


def home_view(
    *,
    active: list[AccessRequest],
    open_requests: list[AccessRequest],
    awaiting: list[AccessRequest],
    label: Callable[[str], str],
    now: datetime,
    notices: Sequence[Block] = (),
) -> dict[str, Any]:
    """The home tab. ``label`` maps a profile id to its display name; ``notices`` (for admins: channel problems,
    at most 7 blocks) go last."""
    blocks: list[Block] = [
        header("Tailscale access"),
        actions(button("Request access", ActionId.NEW_REQUEST, "new", "primary")),
        header("Your active access"),
    ]
    if not active:
        blocks.append(context("You have no active access right now."))
    granted: list[list[Block]] = []
    for grant in active:
        assert grant.expires_at is not None
        granted.append(
            [
                section(
                    f"*{escape(label(grant.profile_id), LABEL_LIMIT)}* on *{escape(grant.device_name, LABEL_LIMIT)}*"
                    f" · {attribute_text(grant)}\n"
                    f"Until {when(grant.expires_at)} ({time_left(grant.expires_at, now)})"
                ),
                actions(
                    button("Extend", ActionId.EXTEND, str(grant.id)),
                    button("Revoke", ActionId.REVOKE, str(grant.id), "danger"),
                ),
            ]
        )
    blocks += cap_groups(granted, _room(2), "active grants")
    blocks.append(header("Your open requests"))
    if not open_requests:
        blocks.append(context("No requests are waiting."))
    mine = [
        [
            section(
                f"*#{request.id} {escape(label(request.profile_id), LABEL_LIMIT)}* on "
                f"*{escape(request.device_name, LABEL_LIMIT)}* for {format_duration(request.duration)}\n"
                f"{status_line(request)}"
            )
        ]
        for request in open_requests
    ]
    blocks += cap_groups(mine, _room(1), "open requests")
    blocks.append(header("Waiting for your approval"))
    if not awaiting:
        blocks.append(context("Nothing is waiting for you."))
    theirs: list[list[Block]] = []
    for request in awaiting:
        item = [
            section(
                f"*#{request.id}* {user(request.requester_id)} asks for "
                f"*{escape(label(request.profile_id), LABEL_LIMIT)}* on *{escape(request.device_name, LABEL_LIMIT)}* "
                f"for {format_duration(request.duration)}: {escape(request.reason, REASON_LIMIT)}"
            )
        ]
        if request.status == RequestStatus.PENDING:
            item.append(
                actions(
                    button("Approve", ActionId.APPROVE, str(request.id), "primary"),
                    button("Deny", ActionId.DENY, str(request.id), "danger"),
                )
            )
        theirs.append(item)
    blocks += cap_groups(theirs, _room(2), "requests waiting for you")
    blocks += notices
    return home(blocks)
