"""Options loads of external selects: the device picker, answered from the in-memory index.

Over HTTP the answer is given inline by the endpoint's gate (``inline_answers``, after the signature and shape
checks), without Bolt's acknowledgement machinery, whose poll for the ack cost ~10 ms per keystroke; Socket Mode
goes through the Bolt listener below. Both give the same answer, built by ``options_answer``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, App

from app.slack.context import SlackContext
from app.slack.ids import ActionId
from app.slack.listeners.request_modal import learn_email
from app.slack.views.device_options import device_option_groups

FIRST_LOAD_WAIT = 1.5
"""Seconds the first options load after a start may wait for the device index (Slack allows 3 s); later loads
read what the scheduler's refresh job keeps fresh."""

OptionsAnswer = Callable[[dict[str, Any]], dict[str, Any]]
"""A signed, shape-checked ``block_suggestion`` payload -> Slack's options response."""


def register(app: App, ctx: SlackContext) -> None:
    """Wire the options handler below; Bolt passes it the arguments it names after ``ctx``."""
    app.options(ActionId.DEVICE_SELECT)(partial(device_options, ctx))


def inline_answers(ctx: SlackContext) -> dict[str, OptionsAnswer]:
    """The ``block_suggestion`` answers the HTTP endpoint gives itself, by ``action_id``."""
    return {ActionId.DEVICE_SELECT: partial(options_answer, ctx)}


def device_options(ctx: SlackContext, ack: Ack, body: dict[str, Any]) -> None:
    """Bolt's listener (Socket Mode): the same answer as the inline one."""
    ack(**options_answer(ctx, body))


def options_answer(ctx: SlackContext, body: dict[str, Any]) -> dict[str, Any]:
    """Answered from memory only: the device index and the requester's email learned at shortcut time."""
    if ctx.devices.loaded_at is None:  # the very first keystroke after a start: load, within a budget
        ctx.pools.within(FIRST_LOAD_WAIT, ctx.devices.ensure_loaded)  # a slower load lands for the next
    user_id = body["user"]["id"]
    email = ctx.directory.known_email(user_id)
    if email is None:  # not learned yet (a restart since the form opened): learn it for the next keystroke
        ctx.pools.later(learn_email, ctx, user_id)
    matches = ctx.devices.search(str(body.get("value") or ""), owner_email=email)
    return device_option_groups(matches)
