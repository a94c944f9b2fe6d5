"""Modal submissions: the access request and the deny reason."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.access.errors import AccessError, SubmissionInvalid
from app.slack.context import SlackContext
from app.slack.ids import ActionId, BlockId, CallbackId
from app.slack.listeners.replies import tell
from app.slack.views.request_modal import decode_metadata, read_form


def field_errors(view: dict[str, Any], errors: dict[str, str]) -> dict[str, str]:
    """Place each error on its input block; errors for fields the view lacks go on the profile field."""
    inputs = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
    placed: dict[str, str] = {}
    for block, message in errors.items():
        target = block if block in inputs else BlockId.PROFILE
        placed[target] = f"{placed[target]} {message}" if target in placed else message
    return placed


def register(app: App, ctx: SlackContext) -> None:
    """Add the view-submission listeners."""

    @app.view(CallbackId.REQUEST_MODAL)
    def submit_request(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user_id = body["user"]["id"]
        form = read_form(view.get("state", {}).get("values", {}))
        device = ctx.devices.get(form.device_id) if form.device_id else None
        try:
            request = ctx.access.submit(
                requester_id=user_id,
                profile_id=form.profile_id or "",
                device=device,
                duration=form.duration,
                approver_ids=form.approver_ids,
                reason=form.reason,
                extends_request_id=decode_metadata(view.get("private_metadata")),
            )
        except SubmissionInvalid as exc:
            ack(response_action="errors", errors=field_errors(view, exc.errors))
            return
        except AccessError as exc:  # e.g. the database is busy: nothing was stored
            ack(response_action="errors", errors=field_errors(view, {BlockId.PROFILE: exc.message}))
            return
        ack()
        ctx.notifier.deliver(request.id)

    @app.view(CallbackId.DENY_MODAL)
    def submit_deny(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user_id = body["user"]["id"]
        try:
            request_id = json.loads(view.get("private_metadata") or "{}")["request_id"]
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                raise TypeError("request_id is not an integer")
        except (ValueError, KeyError, TypeError):
            ack()
            tell(client, body, "That form is malformed; nothing was changed.")
            return
        values = view.get("state", {}).get("values", {})
        reason = ((values.get(BlockId.DENY_REASON) or {}).get(ActionId.DENY_REASON_INPUT) or {}).get("value")
        try:
            ctx.access.deny(request_id, user_id, reason)
        except AccessError as exc:
            ack(response_action="errors", errors={BlockId.DENY_REASON: exc.message})
            return
        ack()
        ctx.notifier.deliver(request_id)
