"""Options loads of external selects: the device picker, answered from the in-memory index."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from app.slack.context import SlackContext
from app.slack.ids import ActionId
from app.slack.views.device_options import device_option_groups


def register(app: App, ctx: SlackContext) -> None:
    """Add the options listener."""

    @app.options(ActionId.DEVICE_SELECT)
    def device_options(ack: Ack, body: dict[str, Any]) -> None:
        ctx.devices.refresh_if_stale()
        if ctx.devices.loaded_at is None:
            ctx.devices.ensure_loaded(timeout=2.0)  # the very first keystroke after a start
        email = ctx.directory.email_of(body["user"]["id"])
        matches = ctx.devices.search(str(body.get("value") or ""), owner_email=email)
        ack(**device_option_groups(matches))
