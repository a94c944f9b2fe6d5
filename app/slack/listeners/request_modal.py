"""Opening and refreshing the request modal (shared by the shortcut, buttons and /posture request)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.profiles import Profile
from app.slack.context import SlackContext
from app.slack.views.request_modal import RequestDraft, read_form, request_modal

log = logging.getLogger(__name__)


def approver_choices(ctx: SlackContext, profile: Profile | None) -> list[tuple[str, str]]:
    """(user id, display name) of the profile's approvers, sorted by name."""
    if profile is None:
        return []
    ids = ctx.access.eligible_approvers(profile)
    return sorted(((uid, ctx.directory.name_of(uid)) for uid in ids), key=lambda pair: pair[1].lower())


def open_request_modal(
    ctx: SlackContext, client: WebClient, trigger_id: str, draft: RequestDraft | None = None
) -> None:
    """Open the modal at once (the trigger is valid 3 s), then fill in the slower parts with an update."""
    ctx.devices.refresh_if_stale()
    config = ctx.config()
    profiles = list(config.profiles)
    draft = draft or RequestDraft()
    selected = config.profile(draft.profile_id) if draft.profile_id else None
    if selected is None and len(profiles) == 1:
        selected = profiles[0]
    quick = request_modal(profiles=profiles, selected=None, approvers=[], draft=draft)
    if selected is None:
        client.views_open(trigger_id=trigger_id, view=quick)
        return
    opened = client.views_open(trigger_id=trigger_id, view=quick)["view"]
    full = request_modal(profiles=profiles, selected=selected, approvers=approver_choices(ctx, selected), draft=draft)
    client.views_update(view_id=opened["id"], hash=opened.get("hash"), view=full)


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
    )
    updated = request_modal(
        profiles=list(config.profiles), selected=selected, approvers=approver_choices(ctx, selected), draft=draft
    )
    updated["private_metadata"] = view.get("private_metadata", updated["private_metadata"])
    try:
        client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=updated)
    except SlackApiError as exc:  # closed meanwhile, or changed again (hash_conflict): the newer view stands
        log.warning("could not refresh request modal %s: %s", view.get("id"), exc.response.get("error"))
