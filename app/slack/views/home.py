"""The App Home tab: my active grants, my open requests, approvals waiting for me."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from app.access.read_model import AccessRequest
from app.core.timefmt import format_duration
from app.db.tables.access import RequestStatus
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
    ]
    blocks += _listed(
        "Your active access",
        "You have no active access right now.",
        [_grant_item(grant, label, now) for grant in active],
        _room(2),
        "active grants",
    )
    blocks += _listed(
        "Your open requests",
        "No requests are waiting.",
        [_open_item(request, label) for request in open_requests],
        _room(1),
        "open requests",
    )
    blocks += _listed(
        "Waiting for your approval",
        "Nothing is waiting for you.",
        [_awaiting_item(request, label) for request in awaiting],
        _room(2),
        "requests waiting for you",
    )
    blocks += notices
    return home(blocks)


def _listed(title: str, empty: str, items: list[list[Block]], room: int, what: str) -> list[Block]:
    """A header, then the items (at most ``room`` blocks, "…and N more" past it) or ``empty`` when none."""
    blocks: list[Block] = [header(title)]
    if not items:
        blocks.append(context(empty))
    return blocks + cap_groups(items, room, what)


def _grant_item(grant: AccessRequest, label: Callable[[str], str], now: datetime) -> list[Block]:
    """An active grant: what, until when, and its Extend and Revoke buttons (an upcoming one: its window)."""
    if grant.status == RequestStatus.SCHEDULED:
        return _upcoming_item(grant, label)
    assert grant.expires_at is not None
    return [
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


def _upcoming_item(grant: AccessRequest, label: Callable[[str], str]) -> list[Block]:
    """A scheduled grant: what, from when until when, and Revoke (nothing is written before its start)."""
    assert grant.starts_at is not None and grant.window_end is not None
    return [
        section(
            f":calendar: *{escape(label(grant.profile_id), LABEL_LIMIT)}* on "
            f"*{escape(grant.device_name, LABEL_LIMIT)}* · {attribute_text(grant)}\n"
            f"Upcoming: from {when(grant.starts_at)} until {when(grant.window_end)}"
        ),
        actions(button("Revoke", ActionId.REVOKE, str(grant.id), "danger")),
    ]


def _open_item(request: AccessRequest, label: Callable[[str], str]) -> list[Block]:
    """One of my open requests and where it stands."""
    return [
        section(
            f"*#{request.id} {escape(label(request.profile_id), LABEL_LIMIT)}* on "
            f"*{escape(request.device_name, LABEL_LIMIT)}* for {format_duration(request.duration)}\n"
            f"{status_line(request)}"
        )
    ]


def _awaiting_item(request: AccessRequest, label: Callable[[str], str]) -> list[Block]:
    """A request waiting for my approval, with Approve and Deny while it is pending."""
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
    return item
