"""The ``/posture`` slash command (its access subcommands; posture subcommands join later)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from app.access import queries
from app.access.errors import AccessError
from app.slack.context import SlackContext
from app.slack.listeners import posture as posture_admin
from app.slack.listeners import posture_check
from app.slack.listeners.replies import Reply
from app.slack.listeners.request_modal import open_request_modal
from app.slack.views.common import cut, escape, when
from app.slack.views.request_message import attribute_text, time_left
from app.slack.work import ACK_BUDGET

log = logging.getLogger(__name__)

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
    """Wire the slash command handler below; Bolt passes it the arguments it names after ``ctx``."""
    app.command("/posture")(partial(posture_command, ctx))


def posture_command(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
    """Dispatch ``/posture <subcommand>`` (see ``answer_within`` for when the answer comes)."""
    words = str(body.get("text") or "").split()
    sub = words[0].lower() if words else "help"
    handler = posture_admin.HANDLERS.get(sub) or posture_check.HANDLERS.get(sub)
    if sub == "grants":
        handler = grants_command
    if handler is not None:
        answer_within(ctx, ack, respond, handler, body, words[1:])
        return
    if sub == "request":
        ack()
        open_request_modal(ctx, client, body["trigger_id"], user_id=body["user_id"])
        return
    prefix = "" if sub == "help" else f"I don't know `{escape(sub)}`.\n"
    ack(response_type="ephemeral", text=prefix + HELP)


class _FirstInAck:
    """A ``Reply`` whose first answer travels in the acknowledgement if it comes in time, later ones (or a
    late first one) through ``response_url``. Thread-safe: the handler answers from the work pool while the
    listener may acknowledge empty when the budget runs out."""

    def __init__(self, ack: Ack, respond: Respond) -> None:
        self._ack = ack
        self._respond = respond
        self._lock = threading.Lock()
        self.acknowledged = False

    def __call__(self, **kwargs: Any) -> None:
        with self._lock:
            if not self.acknowledged:
                self.acknowledged = True
                self._ack(**kwargs)
                return
        if kwargs.get("text") or kwargs.get("blocks"):
            self._respond(**{"response_type": "ephemeral", "replace_original": False, **kwargs})

    def acknowledge_empty(self) -> None:
        """Acknowledge with nothing unless an answer already went (the budget ran out)."""
        with self._lock:
            if not self.acknowledged:
                self.acknowledged = True
                self._ack()


def answer_within(
    ctx: SlackContext, ack: Ack, respond: Respond, handler: Callable[..., None], body: dict[str, Any], args: list[str]
) -> None:
    """Run a subcommand on the work pool: a quick answer comes in the acknowledgement itself (as before);
    one that takes longer than ``ACK_BUDGET`` comes through ``response_url`` after an empty acknowledgement,
    so Slack never gives up on the command. Errors are answered in words, never as a trace."""
    reply = _FirstInAck(ack, respond)

    def run() -> None:
        try:
            handler(ctx, reply, body, respond, args)
        except AccessError as exc:
            reply(response_type="ephemeral", text=exc.message)
        except Exception:
            log.exception("/posture %s failed", str(body.get("text") or "")[:100])
            reply(response_type="ephemeral", text="Something went wrong on my side; please try again in a minute.")

    ctx.pools.within(ACK_BUDGET, run)
    reply.acknowledge_empty()


def grants_command(ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture grants``: the person's active access and when each ends, then their upcoming (scheduled) access."""
    grants = queries.active_grants(ctx.db, body["user_id"])
    upcoming = queries.upcoming_grants(ctx.db, body["user_id"])
    if not grants and not upcoming:
        reply(response_type="ephemeral", text="You have no active access right now.")
        return
    now = ctx.clock()
    lines = [
        f"• *{escape(ctx.profile_label(g.profile_id))}* on *{escape(g.device_name)}* ({attribute_text(g)}) "
        f"until {when(g.expires_at)} — {time_left(g.expires_at, now)}"
        for g in grants
        if g.expires_at is not None
    ]
    lines += [
        f"• :calendar: *{escape(ctx.profile_label(u.profile_id))}* on *{escape(u.device_name)}* ({attribute_text(u)}) "
        f"upcoming: from {when(u.starts_at)} until {when(u.window_end)}"
        for u in upcoming
        if u.starts_at is not None and u.window_end is not None
    ]
    reply(response_type="ephemeral", text=cut("Your active access:\n" + "\n".join(lines), 3000))
