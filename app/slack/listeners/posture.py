"""``/posture`` admin subcommands for EDR integrations: connect, disconnect, sync, status."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access import break_glass, drift
from app.access.errors import AccessError
from app.access.outbox import open_channel_problems
from app.core.errors import ConfigError
from app.db import audit
from app.slack.context import SlackContext
from app.slack.ids import CallbackId
from app.slack.listeners.replies import Reply, tell
from app.slack.views.break_glass import unreviewed_blocks
from app.slack.views.common import escape
from app.slack.views.delivery import channel_problem_blocks
from app.slack.views.drift import drift_status_blocks
from app.slack.views.posture import connect_modal, read_connect_form, status_card, sync_result
from app.slack.work import ACK_BUDGET
from app.vendors.integrations import IntegrationError
from app.vendors.registry import vendor as vendor_spec
from app.vendors.registry import vendors
from app.vendors.status import status_of

log = logging.getLogger(__name__)


def refuse_non_admin(ctx: SlackContext, reply: Reply, body: dict[str, Any], what: str) -> bool:
    """Refuse (and audit the attempt) unless the user is an accessbot admin; True when refused."""
    user_id = body["user_id"]
    if ctx.access.is_admin(user_id):
        return False
    audit.record_refusal(
        ctx.db,
        at=ctx.clock(),
        actor=user_id,
        target=f"command/posture {what}",
        details={"text": str(body.get("text") or "")[:200], "channel": body.get("channel_id")},
    )
    reply(response_type="ephemeral", text=f"Only accessbot admins can {what}. Ask one of them if you need it done.")
    return True


def _vendor_arg(reply: Reply, args: list[str]) -> str | None:
    known = ", ".join(vendors()) or "none"
    if not args:
        reply(response_type="ephemeral", text=f"Name the vendor: one of {known}.")
        return None
    try:
        return vendor_spec(args[0]).id
    except KeyError:
        reply(response_type="ephemeral", text=f"I don't know the vendor `{args[0]}`; I know {known}.")
        return None


def _runner_or_explain(ctx: SlackContext, reply: Reply) -> bool:
    try:
        _ = ctx.sync
    except ConfigError as exc:
        reply(response_type="ephemeral", text=f"EDR integrations are not available: {exc}")
        return False
    return True


def sync_command(ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture sync [vendor]``: admins only; answers at once, posts each result when done."""
    if refuse_non_admin(ctx, reply, body, "run a posture sync") or not _runner_or_explain(ctx, reply):
        return
    if args:
        target = _vendor_arg(reply, args)
        if target is None:
            return
        targets = [target]
    else:
        targets = [i.vendor for i in ctx.sync.integrations.list()]
    try:
        targets = [ctx.sync.integrations.get(t).vendor for t in targets]
    except IntegrationError as exc:
        reply(response_type="ephemeral", text=exc.message)
        return
    if not targets:
        reply(response_type="ephemeral", text="No EDR integration is connected yet: try `/posture connect huntress`.")
        return
    reply(response_type="ephemeral", text=f"Syncing {', '.join(targets)} now; I'll post the result here.")
    for target in targets:
        text, blocks = sync_result(ctx.sync.run(target))
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)


def status_command(ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture status``: the status card."""
    if refuse_non_admin(ctx, reply, body, "see the integrations' status") or not _runner_or_explain(ctx, reply):
        return
    now = ctx.clock()
    statuses = [status_of(i, now) for i in ctx.sync.integrations.list()]
    blocks = status_card(statuses)
    text = (
        "; ".join(f"{escape(s['label'])}: {escape(s['headline'])}" for s in statuses)
        or "No EDR integration is connected."
    )
    channel_problems = channel_problem_blocks(open_channel_problems(ctx.db), ctx.config())
    blocks += channel_problems
    text += " Some notify channels refuse accessbot's posts; see below." if channel_problems else ""
    unreviewed, total = break_glass.unreviewed(ctx.db)
    blocks += unreviewed_blocks(unreviewed, total, ctx.profile_label)
    text += f" {total} break-glass grant(s) not reviewed yet; see below." if total else ""
    drifted = drift.open_count(ctx.db)
    blocks += drift_status_blocks(drifted)
    text += f" {drifted} device attribute(s) held without an active grant (drift); see below." if drifted else ""
    reply(response_type="ephemeral", text=text, blocks=blocks)


def connect_command(ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """``/posture connect <vendor>``: a modal with the vendor's fields."""
    if refuse_non_admin(ctx, reply, body, "connect EDR vendors") or not _runner_or_explain(ctx, reply):
        return
    target = _vendor_arg(reply, args)
    if target is None:
        return
    existing = next((i for i in ctx.sync.integrations.list() if i.vendor == target), None)
    client: WebClient = ctx.client
    try:
        client.views_open(trigger_id=body["trigger_id"], view=connect_modal(vendor_spec(target), existing))
    except SlackApiError as exc:
        log.warning("could not open the connect modal: %s", exc.response.get("error"))
        reply(response_type="ephemeral", text="Slack was too slow to open the form; please run the command again.")
        return
    reply()


def disconnect_command(
    ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]
) -> None:
    """``/posture disconnect <vendor>``: remove the vendor's attributes from devices, then the integration."""
    if refuse_non_admin(ctx, reply, body, "disconnect EDR vendors") or not _runner_or_explain(ctx, reply):
        return
    target = _vendor_arg(reply, args)
    if target is None:
        return
    try:
        label = ctx.sync.integrations.get(target).label
    except IntegrationError as exc:
        reply(response_type="ephemeral", text=exc.message)
        return
    reply(response_type="ephemeral", text=f"Disconnecting {label}: removing its attributes from devices first…")
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
    """Wire the connect modal's submission handler below; Bolt passes it the arguments it names after ``ctx``."""
    app.view(CallbackId.CONNECT_MODAL)(partial(submit_connect, ctx))


def submit_connect(ctx: SlackContext, ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
    """Validate and save inside the acknowledgement (budgeted); the sync it starts runs on the work pool."""
    user_id = body["user"]["id"]
    target = str(_metadata(view).get("vendor") or "")
    values = read_connect_form(view.get("state", {}).get("values", {}))

    def save() -> str | None:
        if not ctx.access.is_admin(user_id):
            return "Only accessbot admins can connect vendors."
        integrations = ctx.sync.integrations
        if any(i.vendor == target for i in integrations.list()):
            integrations.update(target, values, actor=user_id)
        else:
            integrations.add(target, values, actor=user_id)
        return None

    in_time, future = ctx.pools.within(ACK_BUDGET, save)
    if not in_time:
        ack(response_action="errors", errors={_first_block(view): SLOW})
        return
    error = future.exception()
    if isinstance(error, IntegrationError):
        ack(response_action="errors", errors={_block_for(view, error.message): error.message})
        return
    if isinstance(error, AccessError | ConfigError):
        ack(response_action="errors", errors={_first_block(view): str(getattr(error, "message", error))})
        return
    if error is not None:
        log.error("saving the %s integration failed", target, exc_info=error)
        ack(response_action="errors", errors={_first_block(view): "Saving failed on my side; see the logs."})
        return
    refusal = future.result()
    if refusal is not None:
        ack(response_action="errors", errors={_first_block(view): refusal})
        return
    ack()
    ctx.pools.later(_sync_and_tell, ctx, client, target, user_id)


SLOW = "Slack or the database is slow to answer right now; nothing was saved. Please submit again."


def _sync_and_tell(ctx: SlackContext, client: WebClient, target: str, user_id: str) -> None:
    """Creating or updating an integration syncs it at once; the admin is told the result."""
    text, _ = sync_result(ctx.sync.run(target))
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
