"""``/posture check <device>`` and ``/posture attrs <device>``: anyone for their own devices, admins for any."""

from __future__ import annotations

from typing import Any

from slack_bolt import Respond

from app.posture.check import check_device
from app.slack.context import SlackContext
from app.slack.listeners.replies import Reply
from app.slack.views.posture_check import attrs_blocks, check_blocks
from app.tailnet.errors import TailnetError
from app.tailnet.models import Device
from app.tailnet.service import match_device


def _device(ctx: SlackContext, reply: Reply, body: dict[str, Any], args: list[str], verb: str) -> Device | None:
    """The device named in ``args`` if the user may look at it; otherwise answer why not."""
    if not args:
        reply(response_type="ephemeral", text=f"Name the device: `/posture {verb} <name, hostname, IP or id>`.")
        return None
    ref = " ".join(args)
    ctx.devices.ensure_loaded()  # only the first look-up after a start waits; the scheduler keeps it fresh
    direct = ctx.devices.get(ref)
    candidates = [direct] if direct else ctx.devices.search(ref, limit=100).devices
    try:
        device = match_device(candidates, ref)
    except TailnetError as exc:
        reply(response_type="ephemeral", text=exc.message)
        return None
    user_id = body["user_id"]
    email = ctx.directory.email_of(user_id)
    own = email is not None and device.user.lower() == email.lower()
    if not own and not ctx.access.is_admin(user_id):
        reply(
            response_type="ephemeral", text=f"{device.short_name} is not your device; only admins can {verb} others'."
        )
        return None
    return device


def check_command(ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """Explain, posture by posture and condition by condition, whether the device passes."""
    device = _device(ctx, reply, body, args, "check")
    if device is None:
        return
    policy = ctx.policy()
    if policy is None:
        reply(response_type="ephemeral", text="No policy file is configured (`policy_file` in the config).")
        return
    attributes = ctx.tailnet.get_attributes(device.id)
    text, blocks = check_blocks(device, check_device(policy, attributes.attributes))
    reply(response_type="ephemeral", text=text, blocks=blocks)


def attrs_command(ctx: SlackContext, reply: Reply, body: dict[str, Any], respond: Respond, args: list[str]) -> None:
    """List the device's attributes with the time left before each expiry."""
    device = _device(ctx, reply, body, args, "see the attributes of")
    if device is None:
        return
    text, blocks = attrs_blocks(device, ctx.tailnet.get_attributes(device.id), ctx.clock())
    reply(response_type="ephemeral", text=text, blocks=blocks)


HANDLERS = {"check": check_command, "attrs": attrs_command}
