"""``/posture`` admin subcommands for EDR integrations: connect, disconnect, sync, status."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from app import audit
from app.access.outbox import open_channel_problems
from app.settings import ConfigError
from app.slack.context import SlackContext
from app.slack.ids import CallbackId
from app.slack.listeners.replies import tell
from app.slack.views.delivery import channel_problem_blocks
from app.slack.views.posture import connect_modal, read_connect_form, status_card, sync_result
from app.vendors.integrations import IntegrationError
from app.vendors.registry import vendor as vendor_spec
from app.vendors.registry import vendors
from app.vendors.status import status_of

log = logging.getLogger(__name__)


def refuse_non_admin(ctx: SlackContext, ack: Ack, body: dict[str, Any], what: str) -> bool:
    """Refuse (and audit the attempt) unless the user is an accessbot admin; True when refused."""
    user_id = body["user_id"]
    if ctx.access.is_admin(user_id):
        return False
    audit.record_refusal(
        ctx.runtime.db,
        at=ctx.clock(),
        actor=user_id,
        target=f"command/posture {what}",
        details={"text": str(body.get("text") or "")[:200], "channel": body.get("channel_id")},
    )
    ack(response_type="ephemeral", text=f"Only accessbot admins can {what}. Ask one of them if you need it done.")
    return True


def _vendor_arg(ack: Ack, args: list[str]) -> str | None:
    known = ", ".join(vendors()) or "none"
    if not args:
        ack(response_type="ephemeral", text=f"Name the vendor: one of {known}.")
        return None
    try:
        return vendor_spec(args[0]).id
    except KeyError:
        ack(response_type="ephemeral", text=f"I don't know the vendor `{args[0]}`; I know {known}.")
        return None


def _runner_or_explain(ctx: SlackContext, ack: Ack) -> bool:
    try:
        _ = ctx.sync
    except ConfigError as exc:
        ack(response_type="ephemeral", text=f"EDR integrations are not available: {exc}")
        return False
    return True


def sync_command(ctx: SlackContext, ack: Ack, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture sync [vendor]``: admins only; answers at once, posts each result when done."""
    if refuse_non_admin(ctx, ack, body, "run a posture sync") or not _runner_or_explain(ctx, ack):
        return
    if args:
        target = _vendor_arg(ack, args)
        if target is None:
            return
        targets = [target]
    else:
        targets = [i.vendor for i in ctx.sync.integrations.list()]
    try:
        targets = [ctx.sync.integrations.get(t).vendor for t in targets]
    except IntegrationError as exc:
        ack(response_type="ephemeral", text=exc.message)
        return
    if not targets:
        ack(response_type="ephemeral", text="No EDR integration is connected yet: try `/posture connect huntress`.")
        return
    ack(response_type="ephemeral", text=f"Syncing {', '.join(targets)} now; I'll post the result here.")
    for target in targets:
        text, blocks = sync_result(ctx.sync.run(target))
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)


def status_command(ctx: SlackContext, ack: Ack, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture status``: the status card."""
    if refuse_non_admin(ctx, ack, body, "see the integrations' status") or not _runner_or_explain(ctx, ack):
        return
    now = ctx.clock()
    statuses = [status_of(i, now) for i in ctx.sync.integrations.list()]
    blocks = status_card(statuses)
    text = "; ".join(f"{s['label']}: {s['headline']}" for s in statuses) or "No EDR integration is connected."
    channel_problems = channel_problem_blocks(open_channel_problems(ctx.runtime.db), ctx.config())
    blocks += channel_problems
    text += " Some notify channels refuse accessbot's posts; see below." if channel_problems else ""
    ack(response_type="ephemeral", text=text, blocks=blocks)


def connect_command(ctx: SlackContext, ack: Ack, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture connect <vendor>``: a modal with the vendor's fields."""
    if refuse_non_admin(ctx, ack, body, "connect EDR vendors") or not _runner_or_explain(ctx, ack):
        return
    target = _vendor_arg(ack, args)
    if target is None:
        return
    ack()
    existing = next((i for i in ctx.sync.integrations.list() if i.vendor == target), None)
    client: WebClient = ctx.client
    client.views_open(trigger_id=body["trigger_id"], view=connect_modal(vendor_spec(target), existing))


def disconnect_command(ctx: SlackContext, ack: Ack, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture disconnect <vendor>``: remove the vendor's attributes from devices, then the integration."""
    if refuse_non_admin(ctx, ack, body, "disconnect EDR vendors") or not _runner_or_explain(ctx, ack):
        return
    target = _vendor_arg(ack, args)
    if target is None:
        return
    try:
        label = ctx.sync.integrations.get(target).label
    except IntegrationError as exc:
        ack(response_type="ephemeral", text=exc.message)
        return
    ack(response_type="ephemeral", text=f"Disconnecting {label}: removing its attributes from devices first…")
    try:
        removed = ctx.sync.disconnect(target, actor=body["user_id"])
    except Exception as exc:  # tell the admin; the integration stays so nothing is half-removed
        log.exception("disconnecting %s failed", target)
        respond(
            text=f":x: Disconnecting {label} failed, it stays connected: {exc}",
            response_type="ephemeral",
            replace_original=False,
        )
        return
    respond(
        text=f":wastebasket: {label} disconnected; {removed} attributes removed from devices.",
        response_type="ephemeral",
        replace_original=False,
    )


HANDLERS = {
    "sync": sync_command,
    "status": status_command,
    "connect": connect_command,
    "disconnect": disconnect_command,
}


def register(app: App, ctx: SlackContext) -> None:
    """Add the connect modal's submission listener."""

    @app.view(CallbackId.CONNECT_MODAL)
    def submit_connect(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user_id = body["user"]["id"]
        if not ctx.access.is_admin(user_id):
            ack(response_action="errors", errors={_first_block(view): "Only accessbot admins can connect vendors."})
            return
        target = str(_metadata(view).get("vendor") or "")
        values = read_connect_form(view.get("state", {}).get("values", {}))
        integrations = ctx.sync.integrations
        try:
            if any(i.vendor == target for i in integrations.list()):
                integrations.update(target, values, actor=user_id)
            else:
                integrations.add(target, values, actor=user_id)
        except IntegrationError as exc:
            ack(response_action="errors", errors={_block_for(view, exc.message): exc.message})
            return
        ack()
        text, _ = sync_result(ctx.sync.run(target))  # creating or updating syncs at once
        tell(client, {"user": {"id": user_id}}, text)
        log.info("posture integration %s saved by %s: %s", target, user_id, text)


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    """The connect form's ``private_metadata`` (``{}`` when it is not a JSON object)."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _first_block(view: dict[str, Any]) -> str:
    """The first input block (``vendor`` for a view without one, which only a forged payload has)."""
    return next((str(b.get("block_id")) for b in view.get("blocks", []) if b.get("type") == "input"), "vendor")


def _block_for(view: dict[str, Any], message: str) -> str:
    """The input block whose field the message names, else the first input."""
    for block in view.get("blocks", []):
        if block.get("type") == "input":
            name = str(block.get("block_id")).split(":", 1)[-1]
            label = block.get("label")
            label = str(label.get("text") or "") if isinstance(label, dict) else ""
            if name in message or (label and label.lower() in message.lower()):
                return str(block["block_id"])
    return _first_block(view)
