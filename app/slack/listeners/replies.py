"""How listeners answer a person: ephemerally where they clicked, or in a small modal."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.service import MAX_REQUEST_ID
from app.slack.views.request_modal import notice_modal

log = logging.getLogger(__name__)


def tell(client: WebClient, body: dict[str, Any], text: str, *, title: str = "accessbot") -> None:
    """Show ``text`` only to the person who acted: ephemeral in the channel, else a modal (App Home)."""
    user_id = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    try:
        if channel and user_id:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        elif body.get("trigger_id"):
            client.views_open(trigger_id=body["trigger_id"], view=notice_modal(title, text))
        elif user_id:
            dm = client.conversations_open(users=user_id)["channel"]["id"]
            client.chat_postMessage(channel=dm, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s (%s)", user_id, text, exc.response.get("error"))


def request_id_of(action: dict[str, Any]) -> int | None:
    """The request id a button carries (only a pointer: everything else is re-read from the database)."""
    value = str(action.get("value") or "")
    if not (value.isascii() and value.isdigit() and len(value) < 12):
        return None
    return int(value) if int(value) <= MAX_REQUEST_ID else None  # beyond the id column: no such request
