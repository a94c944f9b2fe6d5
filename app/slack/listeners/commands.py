"""The ``/posture`` slash command (its access subcommands; posture subcommands join later)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from app.access import queries
from app.slack.context import SlackContext
from app.slack.listeners import posture as posture_admin
from app.slack.listeners import posture_check
from app.slack.listeners.request_modal import open_request_modal
from app.slack.views.common import when
from app.slack.views.request_message import attribute_text, time_left

HELP = (
    "*accessbot* — `/posture <subcommand>`\n"
    "• `request` — ask for Tailscale access (same as the *Request Tailscale Access* shortcut)\n"
    "• `grants` — your active access and when it ends\n"
    "• `check <device>` — which postures a device meets, condition by condition\n"
    "• `attrs <device>` — a device's posture attributes and when they expire\n"
    "• `status` — EDR integrations: last sync, matches, errors (admins)\n"
    "• `sync [huntress|sentinelone]` — sync device posture now (admins)\n"
    "• `connect <vendor>` / `disconnect <vendor>` — manage EDR integrations (admins)\n"
    "• `help` — this message"
)


def register(app: App, ctx: SlackContext) -> None:
    """Add the slash command listener."""

    @app.command("/posture")
    def posture(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        words = str(body.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        handler = posture_admin.HANDLERS.get(sub) or posture_check.HANDLERS.get(sub)
        if handler is not None:
            handler(ctx, ack, body, respond, words[1:])
            return
        if sub == "request":
            ack()
            open_request_modal(ctx, client, body["trigger_id"])
            return
        if sub == "grants":
            grants = queries.active_grants(ctx.runtime.db, body["user_id"])
            if not grants:
                ack(response_type="ephemeral", text="You have no active access right now.")
                return
            now = ctx.clock()
            lines = [
                f"• *{ctx.profile_label(g.profile_id)}* on *{g.device_name}* ({attribute_text(g)}) until "
                f"{when(g.expires_at)} — {time_left(g.expires_at, now)}"
                for g in grants
                if g.expires_at is not None
            ]
            ack(response_type="ephemeral", text="Your active access:\n" + "\n".join(lines))
            return
        prefix = "" if sub == "help" else f"I don't know `{sub}`.\n"
        ack(response_type="ephemeral", text=prefix + HELP)
