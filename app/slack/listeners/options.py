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

from app.access import eligibility
from app.config.profiles import Profile
from app.slack.context import SlackContext
from app.slack.ids import ActionId, BlockId
from app.slack.listeners.request_modal import learn_email
from app.slack.views.device_options import TAGGED_LABEL, device_option_groups
from app.slack.views.request_modal import read_form

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
    # the links in memory: no query on a keystroke (a stale map is reloaded on the work pool)
    login = ctx.access.identities.login_of(user_id, email, later=ctx.pools.later)
    query = str(body.get("value") or "")
    profile = form_profile(ctx, body.get("view"))
    if profile is None or eligibility.any_device(profile):  # unknown profile: submit checks the choice
        return device_option_groups(ctx.devices.search(query, owner_email=login))
    tags = eligibility.allowed_tags(profile)
    matches = ctx.devices.search_eligible(query, owner_email=login, tags=tags)
    return device_option_groups(matches, others_label=TAGGED_LABEL)


def form_profile(ctx: SlackContext, view: Any) -> Profile | None:
    """The profile chosen in the modal: its state, else the select's initial option (as the modal was built)."""
    if not isinstance(view, dict):
        return None
    config = ctx.config()
    chosen = read_form((view.get("state") or {}).get("values") or {}).profile_id
    if chosen is None:
        block = next((b for b in view.get("blocks") or [] if b.get("block_id") == BlockId.PROFILE), None)
        initial = ((block or {}).get("element") or {}).get("initial_option") or {}
        chosen = initial.get("value") if isinstance(initial.get("value"), str) else None
    profile = config.profile(chosen) if chosen else None
    return profile if profile is not None or len(config.profiles) != 1 else config.profiles[0]
