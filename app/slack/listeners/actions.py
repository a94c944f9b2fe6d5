"""Buttons and selects: profile choice in the modal; Approve, Deny, Retry, Revoke, Extend; new request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.access.errors import AccessError
from app.access.models import RequestStatus
from app.access.requests import AccessRequest
from app.slack.context import SlackContext
from app.slack.ids import ActionId
from app.slack.listeners.home import publish_home
from app.slack.listeners.replies import request_id_of, tell
from app.slack.listeners.request_modal import open_request_modal, refresh_for_profile
from app.slack.views.request_message import attribute_text
from app.slack.views.request_modal import RequestDraft, deny_modal
from app.timefmt import format_duration

log = logging.getLogger(__name__)

DECIDE_THREADS = 16
"""Threads per app for Approve, Retry and Revoke once acknowledged (see ``register``)."""


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
    """Add the action listeners.

    Approve, Retry and Revoke write to the tailnet, which may be slow or down for as long as the adapter's
    retry budget. When Bolt acknowledges before processing (production), they run on threads of their own:
    Bolt runs every listener, and so every ``ack()``, on one small pool (5 threads), and a few slow writes
    there would leave every other click, shortcut and options load of the process unanswered past Slack's 3 s.
    """
    decisions = ThreadPoolExecutor(max_workers=DECIDE_THREADS, thread_name_prefix="accessbot-decide")

    def decide(body: dict[str, Any], client: WebClient, act: Callable[[int, str], AccessRequest]) -> None:
        user_id = body["user"]["id"]
        request_id = request_id_of(body["actions"][0])
        if request_id is None:
            tell(client, body, "That button is malformed; nothing was changed.")
            return
        try:
            act(request_id, user_id)
        except AccessError as exc:
            tell(client, body, exc.message)
        finally:
            ctx.notifier.deliver(request_id)
            if _in_home(body):
                publish_home(ctx, client, user_id)

    def decide_after_ack(body: dict[str, Any], client: WebClient, act: Callable[[int, str], AccessRequest]) -> None:
        if app.process_before_response:
            decide(body, client, act)
            return

        def run() -> None:
            try:
                decide(body, client, act)
            except Exception:
                log.exception("%s failed", body["actions"][0].get("action_id"))

        decisions.submit(run)

    @app.action(ActionId.PROFILE_SELECT)
    def profile_selected(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if isinstance(body.get("view"), dict):  # a profile select lives in the request modal
            refresh_for_profile(ctx, client, body["view"])

    @app.action(ActionId.APPROVE)
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        decide_after_ack(body, client, ctx.access.approve)

    @app.action(ActionId.RETRY)
    def retry(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        decide_after_ack(body, client, ctx.access.retry)

    @app.action(ActionId.REVOKE)
    def revoke(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        decide_after_ack(body, client, ctx.access.revoke)

    @app.action(ActionId.DENY)
    def deny(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request = clicked_request(ctx, client, body)
        if request is None:
            return
        try:
            ctx.access.check_can_decide(request.id, body["user"]["id"], verb="deny")
        except AccessError as exc:
            tell(client, body, exc.message)
            return
        summary = (
            f"Deny <@{request.requester_id}>'s request #{request.id} for *{ctx.profile_label(request.profile_id)}* "
            f"({attribute_text(request)} on {request.device_name}, {format_duration(request.duration)})?"
        )
        client.views_open(trigger_id=body["trigger_id"], view=deny_modal(request.id, summary))

    @app.action(ActionId.EXTEND)
    def extend(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
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
        open_request_modal(ctx, client, body["trigger_id"], draft)

    @app.action(ActionId.NEW_REQUEST)
    def new_request(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        open_request_modal(ctx, client, body["trigger_id"])
