"""What break-glass requests look like in Slack: their status and review lines, the approvers' "Mark reviewed"
button and reminder, the channel announcement, and the unreviewed lists of ``/posture status`` and App Home.

Pure builders over ``AccessRequest`` (``app.access.break_glass`` decides, this only renders).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.access.break_glass import REVIEWABLE
from app.access.read_model import AccessRequest
from app.core.timefmt import format_duration
from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId
from app.slack.views.blockkit import Block, actions, button, escape, header, section, slack_length, user, when

NAME_LIMIT = 200
"""Room for a profile label or device name inside a line (escaped)."""
REASON_LIMIT = 500
"""Room for a reason inside a line (escaped)."""
LISTING_MAX = 2900
"""Room for the listed lines in a section (3,000), leaving room for the "…and N more" line."""
HOME_BUTTONS = 5
"""Mark-reviewed buttons shown in App Home (the list says how many more there are)."""
REVIEW_BUTTON = "Mark reviewed"


def status_line(request: AccessRequest) -> str | None:
    """Where a break-glass request stands while it is written and granted (``None``: the ordinary line fits)."""
    who = user(request.requester_id)
    match request.status:
        case RequestStatus.GRANTING:
            return f":rotating_light: Break glass by {who}: granting now, without approval…"
        case RequestStatus.GRANTED:
            assert request.expires_at is not None
            return (
                f":rotating_light: Break glass: {who} granted this to themselves without approval, until "
                f"{when(request.expires_at)}."
            )
        case RequestStatus.FAILED:
            error = escape(request.last_error or "unknown error", REASON_LIMIT)
            return (
                f":warning: Break glass by {who}, but writing the attribute failed: {error}. Nothing was granted; "
                "an approver or admin can retry."
            )
    return None


def review_line(request: AccessRequest) -> str:
    """Whether an approver has reviewed the break-glass grant yet."""
    if request.reviewed_at is not None:
        by = user(request.reviewed_by or "?")
        return f":white_check_mark: Break glass reviewed by {by} {when(request.reviewed_at)}."
    return ":mag: Break glass, not reviewed yet: an approver should check the reason and mark it reviewed."


def needs_review(request: AccessRequest) -> bool:
    """Whether the request is a break-glass one an approver can still mark reviewed."""
    return request.break_glass and request.reviewed_at is None and request.status in REVIEWABLE


def review_buttons(request: AccessRequest, *, for_approver: bool) -> list[Block]:
    """The approvers' "Mark reviewed" button while the break-glass request needs review."""
    return (
        [button(REVIEW_BUTTON, ActionId.MARK_REVIEWED, str(request.id), "primary")]
        if (for_approver and needs_review(request))
        else []
    )


def channel_text(request: AccessRequest, label: str) -> str:
    """The notify channel's announcement of a break-glass grant (``label`` unescaped)."""
    assert request.expires_at is not None
    return (
        f":rotating_light: *Break glass*: {user(request.requester_id)} granted themselves "
        f"*{escape(label, NAME_LIMIT)}* on *{escape(request.device_name, NAME_LIMIT)}* until "
        f"{when(request.expires_at)} without approval. Reason: {escape(request.reason, REASON_LIMIT)} "
        "An approver will review it."
    )


def reviewed_notice(request: AccessRequest, label: str, by: str) -> str:
    """The requester's DM when an approver reviewed their break-glass grant."""
    return (
        f":white_check_mark: {user(by)} reviewed your break-glass *{escape(label, NAME_LIMIT)}* access "
        f"(request #{request.id})."
    )


def reminder(request: AccessRequest, label: str) -> tuple[str, list[Block]]:
    """The approvers' reminder of a break-glass grant nobody has reviewed yet, with "Mark reviewed"."""
    since = when(request.decided_at or request.created_at)
    text = (
        f":mag: Break glass not reviewed yet: {user(request.requester_id)} granted themselves "
        f"*{escape(label, NAME_LIMIT)}* on *{escape(request.device_name, NAME_LIMIT)}* "
        f"({format_duration(request.duration)}) {since}. Reason: {escape(request.reason, REASON_LIMIT)}"
    )
    blocks = [section(text)]
    if needs_review(request):
        blocks.append(actions(button(REVIEW_BUTTON, ActionId.MARK_REVIEWED, str(request.id), "primary")))
    fallback = f"Break glass #{request.id} is not reviewed yet"
    return fallback, blocks


def _item(request: AccessRequest, label: Callable[[str], str]) -> str:
    since = when(request.decided_at or request.created_at)
    return (
        f"• *#{request.id}* {user(request.requester_id)}: *{escape(label(request.profile_id), NAME_LIMIT)}* on "
        f"{escape(request.device_name, NAME_LIMIT)} {since} ({request.status}). "
        f"Reason: {escape(request.reason, REASON_LIMIT)}"
    )


def unreviewed_blocks(requests: Sequence[AccessRequest], total: int, label: Callable[[str], str]) -> list[Block]:
    """``/posture status``: a header and one section listing unreviewed break-glass grants (2 blocks; none if none)."""
    if not requests:
        return []
    text = _listing([_item(r, label) for r in requests], total)
    return [header(f"Break glass not reviewed ({total})"), section(text)]


def home_blocks(requests: Sequence[AccessRequest], label: Callable[[str], str]) -> list[Block]:
    """App Home for an approver: break-glass grants they may review, with buttons (at most 3 blocks)."""
    if not requests:
        return []
    shown = list(requests[:HOME_BUTTONS])
    text = _listing([_item(r, label) for r in shown], len(requests))
    buttons = [button(f"Mark #{r.id} reviewed", ActionId.MARK_REVIEWED, str(r.id)) for r in shown]
    return [header("Break glass to review"), section(text), actions(*buttons)]


def _listing(lines: Sequence[str], total: int) -> str:
    """Whole lines within a section's text, then "…and N more" counting the ``total`` not shown."""
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + slack_length(line) + 1 > LISTING_MAX:
            break
        kept.append(line)
        used += slack_length(line) + 1
    more = total - len(kept)
    return "\n".join(kept) + (f"\n…and {more} more" if more > 0 else "")
