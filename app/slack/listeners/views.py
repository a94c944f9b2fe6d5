"""Modal submissions: the access request and the deny reason.

A submission's field errors must travel in its acknowledgement, so the checks run before ``ack()`` — but
on the work pool with a budget (``ACK_BUDGET``): a posture check through a slow tailnet or a rate-limited
Slack lookup must not make Slack give up on the request after 3 s (it did, and the person's retry stored
the request twice). Past the budget the modal is acknowledged with a "checking" view and the outcome is
shown in the same modal (or, for a denial, by message) when the work finishes.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.errors import AccessError, SubmissionInvalid
from app.access.read_model import AccessRequest
from app.slack.context import SlackContext
from app.slack.ids import ActionId, BlockId, CallbackId
from app.slack.listeners.replies import tell
from app.slack.listeners.request_modal import approver_choices
from app.slack.views.common import escape, section
from app.slack.views.request_modal import RequestDraft, decode_metadata, notice_modal, read_form, request_modal
from app.slack.work import ACK_BUDGET

log = logging.getLogger(__name__)

TITLE = "Request access"
UNEXPECTED = "Something went wrong on my side. Check App Home for the request's state before trying again."


def field_errors(view: dict[str, Any], errors: dict[str, str]) -> dict[str, str]:
    """Place each error on its input block; errors for fields the view lacks go on the profile field."""
    inputs = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
    placed: dict[str, str] = {}
    for block, message in errors.items():
        target = block if block in inputs else BlockId.PROFILE
        placed[target] = f"{placed[target]} {message}" if target in placed else message
    return placed


def checking_modal() -> dict[str, Any]:
    """What the request modal shows while a slow check finishes after the acknowledgement."""
    return notice_modal(TITLE, ":hourglass_flowing_sand: Checking your request… This window updates when it is done.")


def register(app: App, ctx: SlackContext) -> None:
    """Wire the view-submission handlers below; Bolt passes each the arguments it names after ``ctx``."""
    app.view(CallbackId.REQUEST_MODAL)(partial(submit_request, ctx))
    app.view(CallbackId.DENY_MODAL)(partial(submit_deny, ctx))


def submit_request(ctx: SlackContext, ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
    """Store the request, its field errors (if any) in the acknowledgement; a slow check answers in the modal."""
    user_id = body["user"]["id"]
    form = read_form(view.get("state", {}).get("values", {}))
    device = ctx.devices.get(form.device_id) if form.device_id else None

    def submit() -> AccessRequest:
        return ctx.access.submit(
            requester_id=user_id,
            profile_id=form.profile_id or "",
            device=device,
            duration=form.duration,
            approver_ids=form.approver_ids,
            reason=form.reason,
            extends_request_id=decode_metadata(view.get("private_metadata")),
            break_glass=form.break_glass,
            starts_at=form.starts_at,
        )

    in_time, future = ctx.pools.within(ACK_BUDGET, submit)
    if not in_time:
        ack(response_action="update", view=checking_modal())
        future.add_done_callback(lambda done: ctx.pools.later(_finish_late, ctx, client, view, user_id, done))
        return
    error = future.exception()
    if isinstance(error, SubmissionInvalid):
        ack(response_action="errors", errors=field_errors(view, error.errors))
        return
    if isinstance(error, AccessError):  # e.g. the database is busy: nothing was stored
        ack(response_action="errors", errors=field_errors(view, {BlockId.PROFILE: error.message}))
        return
    if error is not None:
        ack(response_action="errors", errors=field_errors(view, {BlockId.PROFILE: UNEXPECTED}))
        log.error("submitting a request failed", exc_info=error)
        return
    ack()
    ctx.pools.later(after_submit, ctx, future.result().id)


def after_submit(ctx: SlackContext, request_id: int) -> None:
    """After the acknowledgement: the on-call auto-approval (a lookup that may take seconds), then the messages."""
    try:
        ctx.access.auto_approve(request_id)
    except Exception:  # the request stays with its approvers; the requester never sees this
        log.exception("on-call auto-approval of request %s failed", request_id)
    ctx.notifier.deliver(request_id)


def submit_deny(ctx: SlackContext, ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
    """Deny with the reason, refusals in the acknowledgement; a slow denial's outcome comes by message."""
    user_id = body["user"]["id"]
    received = time.monotonic()
    try:
        request_id = json.loads(view.get("private_metadata") or "{}")["request_id"]
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            raise TypeError("request_id is not an integer")
    except (ValueError, KeyError, TypeError):
        ack()
        ctx.pools.later(tell, client, body, "That form is malformed; nothing was changed.")
        return
    values = view.get("state", {}).get("values", {})
    reason = ((values.get(BlockId.DENY_REASON) or {}).get(ActionId.DENY_REASON_INPUT) or {}).get("value")
    in_time, future = ctx.pools.within(ACK_BUDGET, lambda: ctx.access.deny(request_id, user_id, reason))
    if not in_time:
        ack()  # the modal closes; the outcome comes as a message
        future.add_done_callback(
            lambda done: ctx.pools.later(_denied_late, ctx, client, body, request_id, done, received)
        )
        return
    error = future.exception()
    if isinstance(error, AccessError):
        ack(response_action="errors", errors={BlockId.DENY_REASON: error.message})
        return
    ack()
    if error is not None:
        log.error("denying request %s failed", request_id, exc_info=error)
        ctx.pools.later(tell, client, body, UNEXPECTED)
    ctx.pools.later(ctx.notifier.deliver, request_id)


def _finish_late(
    ctx: SlackContext, client: WebClient, view: dict[str, Any], user_id: str, done: Future[AccessRequest]
) -> None:
    """Show a slow submission's outcome in its modal: sent, or the form again with what to fix."""
    error = done.exception()
    view_id = view.get("id")
    if error is None:
        request = done.result()
        sent = f"Request #{request.id} was sent to the approvers."
        if request.break_glass:  # written already (or failed): the outcome is in the DM
            sent = f"Break glass: request #{request.id} is {request.status}; the approvers are told."
        replacement = notice_modal(TITLE, f":white_check_mark: {sent} I'll message you here.")
        after_submit(ctx, request.id)
    elif isinstance(error, AccessError):
        replacement = _form_again(ctx, view, error)
    else:
        log.error("submitting a request failed", exc_info=error)
        replacement = notice_modal(TITLE, UNEXPECTED)
    try:
        client.views_update(view_id=view_id, view=replacement)
    except SlackApiError as exc:  # the person closed the window: tell them in a message instead
        log.warning("could not update request modal %s: %s", view_id, exc.response.get("error"))
        if error is not None:
            message = error.message if isinstance(error, AccessError) else UNEXPECTED
            tell(client, {"user": {"id": user_id}}, f"Your request was not sent: {message}")


def _form_again(ctx: SlackContext, view: dict[str, Any], error: AccessError) -> dict[str, Any]:
    """The request form as the person filled it, with the problems listed on top."""
    form = read_form(view.get("state", {}).get("values", {}))
    config = ctx.config()
    selected = config.profile(form.profile_id) if form.profile_id else None
    try:
        approvers = approver_choices(ctx, selected)
    except AccessError:
        approvers = []
    draft = RequestDraft(
        profile_id=form.profile_id,
        device=ctx.devices.get(form.device_id) if form.device_id else None,
        duration=form.duration,
        approver_ids=tuple(form.approver_ids),
        reason=form.reason,
        extends_request_id=decode_metadata(view.get("private_metadata")),
        break_glass=form.break_glass,
        starts_at=form.starts_at,
    )
    modal = request_modal(profiles=list(config.profiles), selected=selected, approvers=approvers, draft=draft)
    problems = error.errors.values() if isinstance(error, SubmissionInvalid) else [error.message]
    lines = "\n".join(f"• {escape(p)}" for p in problems)
    modal["blocks"] = [section(f":warning: *Not sent yet* — please fix:\n{lines}"), *modal["blocks"]][:100]
    return modal


def _denied_late(
    ctx: SlackContext,
    client: WebClient,
    body: dict[str, Any],
    request_id: int,
    done: Future[AccessRequest],
    received: float,
) -> None:
    """Tell the approver a slow denial's outcome (the modal is already closed)."""
    error = done.exception()
    if isinstance(error, AccessError):
        tell(client, body, f"Request #{request_id} was not denied: {error.message}", received_at=received)
    elif error is not None:
        log.error("denying request %s failed", request_id, exc_info=error)
        tell(client, body, UNEXPECTED, received_at=received)
    ctx.notifier.deliver(request_id)
