"""How listeners answer a person: ephemerally where they clicked, in a small modal, or by DM."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.queries import MAX_REQUEST_ID
from app.slack.views.request_modal import notice_modal

log = logging.getLogger(__name__)

Reply = Callable[..., object]
"""How a slash-command handler answers: ``ack`` inside the acknowledgement, or ``respond`` after it
(both take ``text``, ``blocks`` and ``response_type``)."""

TRIGGER_LIFETIME = 3.0
"""Slack accepts a ``trigger_id`` for 3 s after the click (``expired_trigger_id`` after that)."""
TRIGGER_MARGIN = 1.0
"""How much of that a modal must have left to be worth trying (a Slack call takes time too)."""


def trigger_usable(received_at: float | None) -> bool:
    """Whether a click received at ``received_at`` (``time.monotonic()``) may still open a modal."""
    return received_at is None or time.monotonic() - received_at < TRIGGER_LIFETIME - TRIGGER_MARGIN


def tell(
    client: WebClient, body: dict[str, Any], text: str, *, title: str = "accessbot", received_at: float | None = None
) -> None:
    """Show ``text`` only to the person who acted: ephemeral in the channel, else a modal (App Home), else a DM.

    ``received_at`` (when the click arrived) matters after slow work: once the click's trigger may have
    expired, a modal would fail with ``expired_trigger_id`` and the person would see nothing, so a DM is sent.
    """
    user_id = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    try:
        if channel and user_id:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
            return
        if body.get("trigger_id") and trigger_usable(received_at):
            try:
                client.views_open(trigger_id=body["trigger_id"], view=notice_modal(title, text))
                return
            except SlackApiError as exc:
                if exc.response.get("error") not in ("expired_trigger_id", "exchanged_trigger_id"):
                    raise
        if user_id:
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
