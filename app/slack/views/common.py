"""Small Block Kit building blocks shared by the views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.timefmt import format_rfc3339

TEXT_LIMIT = 3000
OPTION_TEXT_LIMIT = 75


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = OPTION_TEXT_LIMIT) -> dict[str, Any]:
    """A ``plain_text`` object."""
    return {"type": "plain_text", "text": cut(text, limit), "emoji": True}


def mrkdwn(text: str) -> dict[str, Any]:
    """A ``mrkdwn`` text object."""
    return {"type": "mrkdwn", "text": cut(text, TEXT_LIMIT)}


def section(text: str, **extra: Any) -> dict[str, Any]:
    """A section block of mrkdwn text."""
    return {"type": "section", "text": mrkdwn(text), **extra}


def context(text: str) -> dict[str, Any]:
    """A context block with one mrkdwn element."""
    return {"type": "context", "elements": [mrkdwn(text)]}


def option(text: str, value: str) -> dict[str, Any]:
    """A select option (text ≤ 75, value ≤ 150)."""
    return {"text": plain(text), "value": value[:150]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    """A button element."""
    out: dict[str, Any] = {
        "type": "button",
        "text": plain(text),
        "action_id": action_id,
        "value": value[:2000],
    }
    if style:
        out["style"] = style
    return out


def when(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """A Slack date token shown in the reader's time zone, with an RFC 3339 fallback."""
    return f"<!date^{int(moment.timestamp())}^{fmt}|{format_rfc3339(moment)}>"


def user(user_id: str) -> str:
    """A user mention."""
    return f"<@{user_id}>"


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` for mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
