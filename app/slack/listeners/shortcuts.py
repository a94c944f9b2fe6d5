"""Global shortcut "Request Tailscale Access"."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.slack.context import SlackContext
from app.slack.ids import CallbackId
from app.slack.listeners.request_modal import open_request_modal


def register(app: App, ctx: SlackContext) -> None:
    """Add the shortcut listener."""

    @app.shortcut(CallbackId.REQUEST_SHORTCUT)
    def request_access(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        open_request_modal(ctx, client, body["trigger_id"], user_id=body["user"]["id"])
