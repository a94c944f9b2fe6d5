"""Global shortcut "Request Tailscale Access"."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.slack.context import SlackContext
from app.slack.ids import CallbackId
from app.slack.listeners.request_modal import open_request_modal


def register(app: App, ctx: SlackContext) -> None:
    """Wire the shortcut handler below; Bolt passes it the arguments it names after ``ctx``."""
    app.shortcut(CallbackId.REQUEST_SHORTCUT)(partial(request_access, ctx))


def request_access(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    open_request_modal(ctx, client, body["trigger_id"], user_id=body["user"]["id"])
