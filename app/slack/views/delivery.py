"""What admins see about notify channels accessbot cannot post to: the one-time alert DM, and a section for
App Home and ``/posture status``.

Every text says what Slack answered and what to do about it, so an admin can fix it without reading logs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from app.access.outbox import ChannelProblem
from app.config.model import Config
from app.slack.views.common import context, cut, escape, plain, section, when

MAX_SHOWN = 5
"""Problems listed in one section (App Home has little room left under Slack's 100 blocks)."""
LABEL_MAX = 100

_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")

_WHY = {
    "not_in_channel": "accessbot is not a member of the channel",
    "channel_not_found": "the channel does not exist, or it is private and accessbot is not in it",
    "is_archived": "the channel is archived",
    "restricted_action": "the workspace does not let accessbot post in that channel",
    "missing_scope": "accessbot's token lacks the scope to post there",
}


def channel_ref(channel: str) -> str:
    """A channel mention for an id (``<#C123>``), else the configured name, escaped."""
    return f"<#{channel}>" if _CHANNEL_ID.fullmatch(channel) else f"`{escape(channel)}`"


def what_to_do(channel: str, error: str) -> str:
    """The fix for ``error`` on ``channel``, in mrkdwn."""
    ref = channel_ref(channel)
    invite = f"run `/invite @accessbot` in {ref}"
    match error:
        case "not_in_channel":
            return f"R{invite[1:]}, or give the app the `chat:write.public` scope (public channels only)."
        case "channel_not_found":
            return (
                f"Check the profile's `notify_channel` (a channel id such as `C0123ABCD`); for a private channel, "
                f"{invite}."
            )
        case "is_archived":
            return "Unarchive the channel, or point the profile's `notify_channel` at another channel."
        case "restricted_action":
            return "Let apps post in the channel (its posting permissions), or choose another `notify_channel`."
        case "missing_scope":
            return (
                "Add the `chat:write` scope (and `chat:write.public` to post in public channels without an invite) "
                "to the app, then reinstall it."
            )
        case _:
            return f"Check the profile's `notify_channel`, or {invite}."


def _problem_text(channel: str, error: str, label: str) -> str:
    why = _WHY.get(error, "Slack refused the post")
    return (
        f"Grants of *{escape(cut(label, LABEL_MAX))}* are not announced in {channel_ref(channel)}: Slack said "
        f"`{escape(error)}` ({why})."
    )


def admin_alert(channel: str, error: str, label: str) -> tuple[str, list[dict[str, Any]]]:
    """The DM each admin gets once per (channel, error): what failed, what Slack said, what to do."""
    text = (
        f":warning: {_problem_text(channel, error, label)}\n*What to do:* {what_to_do(channel, error)}\n"
        "Requesters and approvers still get their DMs. Announcements to this channel are skipped until a post "
        "works again; you will be told again if it breaks after that."
    )
    return re.sub(r"[*`]", "", text), [section(text)]


def channel_problem_blocks(problems: Sequence[ChannelProblem], config: Config) -> list[dict[str, Any]]:
    """A section listing the open problems of channels the config still uses (nothing when there are none)."""
    used = {p.notify_channel for p in config.profiles if p.notify_channel}
    shown = [p for p in problems if p.channel in used]
    if not shown:
        return []
    blocks: list[dict[str, Any]] = [{"type": "header", "text": plain("Notify channels accessbot cannot post to", 150)}]
    for problem in shown[:MAX_SHOWN]:
        profile = config.profile(problem.profile_id)
        label = profile.label() if profile else problem.profile_id
        times = "once" if problem.occurrences == 1 else f"{problem.occurrences} times"
        blocks.append(
            section(
                f":warning: {_problem_text(problem.channel, problem.error, label)}\n"
                f"*What to do:* {what_to_do(problem.channel, problem.error)}\n"
                f"Since {when(problem.opened_at)}, {times}, last {when(problem.last_seen_at)}."
            )
        )
    if len(shown) > MAX_SHOWN:
        blocks.append(context(f"{len(shown) - MAX_SHOWN} more not shown."))
    return blocks
