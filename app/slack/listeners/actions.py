"""Buttons and selects: profile choice in the modal; Approve, Deny, Retry, Revoke, Extend; new request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.errors import AccessError
from app.access.read_model import AccessRequest
from app.core.timefmt import format_duration
from app.db.tables.access import RequestStatus
from app.slack.context import SlackContext
from app.slack.ids import ActionId
from app.slack.listeners.home import publish_home
from app.slack.listeners.replies import request_id_of, tell
from app.slack.listeners.request_modal import open_request_modal, refresh_for_profile
from app.slack.views.common import escape
from app.slack.views.request_message import attribute_text
from app.slack.views.request_modal import RequestDraft, deny_modal, notice_modal

log = logging.getLogger(__name__)


def _in_home(body: dict[str, Any]) -> bool:
    return (body.get("view") or {}).get("type") == "home"


def clicked_request(ctx: SlackContext, client: WebClient, body: dict[str, Any]) -> AccessRequest | None:
    """The request a button points at, re-read from the database; tells the clicker when there is none."""
    request_id = request_id_of(body["actions"][0])
    try:
        if request_id is None:
            raise AccessError("That button is malformed; nothing was changed.")
        return ctx.access.get(request_id)
    except AccessError as exc:
        tell(client, body, exc.message)
        return None


def register(app: App, ctx: SlackContext) -> None:
    """Wire the action handlers below; Bolt passes each the arguments it names after ``ctx``.

    Every handler acknowledges first. Approve, Retry and Revoke write to the tailnet, which may be slow or
    down for as long as the adapter's retry budget, and resolve approvers through Slack, which may be
    rate-limited: they run on the work pool (``ctx.pools``), never on the threads that acknowledge.
    """
    app.action(ActionId.PROFILE_SELECT)(partial(profile_selected, ctx))
    app.action(ActionId.DEVICE_SELECT)(partial(profile_selected, ctx))  # refreshed alike: what it would unlock
    app.action(ActionId.APPROVE)(partial(approve, ctx))
    app.action(ActionId.RETRY)(partial(retry, ctx))
    app.action(ActionId.REVOKE)(partial(revoke, ctx))
    app.action(ActionId.DENY)(partial(deny, ctx))
    app.action(ActionId.EXTEND)(partial(extend, ctx))
    app.action(ActionId.NEW_REQUEST)(partial(new_request, ctx))
    app.action(ActionId.BREAK_GLASS_TOGGLE)(partial(profile_selected, ctx))  # refreshed: capped durations
    app.action(ActionId.MARK_REVIEWED)(partial(mark_reviewed, ctx))
    app.action(ActionId.START_PICKER)(partial(profile_selected, ctx))  # refreshed: the window's end in the hint


def profile_selected(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """A profile or device chosen in the request modal: the modal is refreshed for it after the
    acknowledgement (approvers for the profile, what the profile would unlock on the device)."""
    ack()
    if isinstance(body.get("view"), dict):  # a profile select lives in the request modal
        ctx.pools.later(refresh_for_profile, ctx, client, body["view"])


def approve(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    ctx.pools.later(decide, ctx, body, client, ctx.access.approve, time.monotonic())


def retry(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    ctx.pools.later(decide, ctx, body, client, ctx.access.retry, time.monotonic())


def revoke(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    ctx.pools.later(decide, ctx, body, client, ctx.access.revoke, time.monotonic())


def decide(
    ctx: SlackContext, body: dict[str, Any], client: WebClient, act: Callable[[int, str], AccessRequest], at: float
) -> None:
    """Run ``act`` (approve, retry, revoke) on the clicked request, on the work pool; then deliver its notices."""
    user_id = body["user"]["id"]
    request_id = request_id_of(body["actions"][0])
    if request_id is None:
        tell(client, body, "That button is malformed; nothing was changed.", received_at=at)
        return
    try:
        act(request_id, user_id)
    except AccessError as exc:
        tell(client, body, exc.message, received_at=at)
    finally:
        ctx.notifier.deliver(request_id)
        if _in_home(body):
            publish_home(ctx, client, user_id)


def mark_reviewed(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """An approver marks a break-glass grant reviewed (who may is checked against the database and directory)."""
    ack()
    ctx.pools.later(decide, ctx, body, client, ctx.access.mark_reviewed, time.monotonic())


def deny(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Open the reason modal first (the trigger lasts 3 s); who may deny is checked after, and again on submit."""
    ack()
    received = time.monotonic()
    request = clicked_request(ctx, client, body)
    if request is None:
        return
    if request.status != RequestStatus.PENDING:
        tell(client, body, f"Request #{request.id} is {request.status}; there is nothing to deny.")
        return
    modal = deny_modal(request.id, _deny_summary(ctx, request))
    try:
        opened = client.views_open(trigger_id=body["trigger_id"], view=modal)["view"]
    except SlackApiError as exc:
        log.warning("could not open the deny modal: %s", exc.response.get("error"))
        ctx.pools.later(
            tell,
            client,
            body,
            "Slack took too long to pass me your click; please click Deny again.",
            received_at=received,
        )
        return
    ctx.pools.later(_check_denier, ctx, client, request.id, body["user"]["id"], opened)


def _deny_summary(ctx: SlackContext, request: AccessRequest) -> str:
    """The question the deny modal asks, naming the request."""
    label = escape(ctx.profile_label(request.profile_id))
    what = f"{attribute_text(request)} on {escape(request.device_name)}"
    return (
        f"Deny <@{request.requester_id}>'s request #{request.id} for *{label}* "
        f"({what}, {format_duration(request.duration)})?"
    )


def extend(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Open the request modal filled in from a granted or ended request of the clicker's."""
    ack()
    request = clicked_request(ctx, client, body)
    if request is None:
        return
    if request.requester_id != body["user"]["id"]:
        tell(client, body, "Only the person who asked for this access can extend it.")
        return
    if request.status not in (RequestStatus.GRANTED, RequestStatus.ENDED):
        tell(client, body, f"Request #{request.id} is {request.status}; there is no access to extend.")
        return
    draft = RequestDraft(
        profile_id=request.profile_id,
        device=ctx.devices.get(request.device_id),
        duration=timedelta(seconds=int(request.duration.total_seconds())),
        approver_ids=request.approver_ids,
        reason=request.reason,
        extends_request_id=request.id,
    )
    open_request_modal(ctx, client, body["trigger_id"], draft, user_id=body["user"]["id"])


def new_request(ctx: SlackContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    open_request_modal(ctx, client, body["trigger_id"], user_id=body["user"]["id"])


def _check_denier(ctx: SlackContext, client: WebClient, request_id: int, user_id: str, opened: dict[str, Any]) -> None:
    """Replace the open deny modal with the reason when this person may not deny (checked through Slack)."""
    try:
        ctx.access.check_can_decide(request_id, user_id, verb="deny")
    except AccessError as exc:
        try:
            client.views_update(view_id=opened["id"], view=notice_modal("Deny request", exc.message))
        except SlackApiError as error:  # closed or submitted meanwhile: the submission is checked again
            log.warning("could not update deny modal %s: %s", opened.get("id"), error.response.get("error"))
