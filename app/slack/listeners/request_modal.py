"""Opening and refreshing the request modal (shared by the shortcut, buttons and /posture request)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.errors import AccessError
from app.config.profiles import Profile
from app.posture.unlock import Unlock
from app.slack.context import SlackContext
from app.slack.listeners.replies import tell
from app.slack.views.request_modal import RequestDraft, read_form, request_modal

log = logging.getLogger(__name__)


def approver_choices(ctx: SlackContext, profile: Profile | None) -> list[tuple[str, str]]:
    """(user id, display name) of the profile's approvers, sorted by name."""
    if profile is None:
        return []
    ids = ctx.access.eligible_approvers(profile)
    return sorted(((uid, ctx.directory.name_of(uid)) for uid in ids), key=lambda pair: pair[1].lower())


def open_request_modal(
    ctx: SlackContext,
    client: WebClient,
    trigger_id: str,
    draft: RequestDraft | None = None,
    *,
    user_id: str | None = None,
) -> None:
    """Open the modal at once (the trigger is valid 3 s), then fill in the slower parts after the ack.

    Called on an acknowledging thread: the only Slack call here is ``views.open``; resolving approvers (and
    learning the requester's email, which the device picker's options loads then read from memory) runs on
    the work pool.
    """
    if ctx.devices.loaded_at is None:  # never loaded yet: load it before the picker's first keystroke needs it
        ctx.pools.later(ctx.devices.ensure_loaded)
    config = ctx.config()
    profiles = list(config.profiles)
    draft = draft or RequestDraft()
    selected = config.profile(draft.profile_id) if draft.profile_id else None
    if selected is None and len(profiles) == 1:
        selected = profiles[0]
    quick = request_modal(profiles=profiles, selected=None, approvers=[], draft=draft)
    try:
        opened = client.views_open(trigger_id=trigger_id, view=quick)["view"]
    except SlackApiError as exc:
        error = exc.response.get("error")
        log.warning("could not open the request modal: %s", error)
        if user_id and error in ("expired_trigger_id", "exchanged_trigger_id"):
            ctx.pools.later(
                tell,
                client,
                {"user": {"id": user_id}},
                "Slack took too long to pass me your click, so the request form could not open. Please try again.",
            )
        return
    if user_id:
        ctx.pools.later(learn_email, ctx, user_id)
    if selected is not None:
        ctx.pools.later(_fill_in, ctx, client, opened, profiles, selected, draft)


def learn_email(ctx: SlackContext, user_id: str) -> None:
    """Ask Slack for the user's email once, so options loads find it in memory."""
    with contextlib.suppress(AccessError):  # Slack busy: the next options load asks again in the background
        ctx.directory.email_of(user_id)


def _fill_in(
    ctx: SlackContext,
    client: WebClient,
    opened: dict[str, Any],
    profiles: list[Profile],
    selected: Profile,
    draft: RequestDraft,
) -> None:
    """Replace the quick modal with the full one (approvers resolved through Slack)."""
    try:
        approvers = approver_choices(ctx, selected)
    except AccessError as exc:  # Slack busy: the modal stays; the approver select says what happened
        log.warning("resolving approvers of %s failed: %s", selected.id, exc.message)
        approvers = []
    unlock = modal_unlock(ctx, selected, draft.device.id if draft.device is not None else None)
    full = request_modal(profiles=profiles, selected=selected, approvers=approvers, draft=draft, unlock=unlock)
    try:
        client.views_update(view_id=opened["id"], hash=opened.get("hash"), view=full)
    except SlackApiError as exc:  # closed meanwhile, or changed by the person (hash_conflict): theirs stands
        log.warning("could not fill in request modal %s: %s", opened.get("id"), exc.response.get("error"))


def modal_unlock(ctx: SlackContext, profile: Profile | None, device_id: str | None) -> Unlock | None:
    """What ``profile`` would unlock on the chosen device (a known one), for the modal; ``None`` when unknown."""
    if ctx.unlocks is None or profile is None or device_id is None:
        return None
    try:
        return ctx.unlocks(device_id, profile.attribute, profile.value)
    except Exception:  # an optional section never keeps the modal from refreshing
        log.exception("could not work out what %s would unlock on %s", profile.id, device_id)
        return None


def refresh_for_profile(ctx: SlackContext, client: WebClient, view: dict[str, Any]) -> None:
    """Re-render the open modal for the newly selected profile, keeping what was typed."""
    form = read_form(view.get("state", {}).get("values", {}))
    config = ctx.config()
    selected = config.profile(form.profile_id) if form.profile_id else None
    device = ctx.devices.get(form.device_id) if form.device_id else None
    draft = RequestDraft(
        profile_id=form.profile_id,
        device=device,
        duration=form.duration,
        approver_ids=tuple(form.approver_ids),
        reason=form.reason,
        break_glass=form.break_glass,
        starts_at=form.starts_at,
    )
    try:
        approvers = approver_choices(ctx, selected)
    except AccessError as exc:
        log.warning("resolving approvers failed: %s", exc.message)
        approvers = []
    unlock = modal_unlock(ctx, selected, device.id if device is not None else None)
    updated = request_modal(
        profiles=list(config.profiles), selected=selected, approvers=approvers, draft=draft, unlock=unlock
    )
    updated["private_metadata"] = view.get("private_metadata", updated["private_metadata"])
    try:
        client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=updated)
    except SlackApiError as exc:  # closed meanwhile, or changed again (hash_conflict): the newer view stands
        log.warning("could not refresh request modal %s: %s", view.get("id"), exc.response.get("error"))
