"""The "Request Tailscale Access" modal and the reading of its submitted state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.access.profiles import Profile
from app.slack.ids import ActionId, BlockId, CallbackId
from app.slack.views.common import context, cut, escape, option, plain, section
from app.slack.views.device_options import device_option
from app.tailnet.models import Device
from app.timefmt import format_duration

TITLE = "Request access"  # ≤ 24 characters


@dataclass(frozen=True, slots=True)
class RequestDraft:
    """What the modal is pre-filled with (the Extend button fills in the previous request)."""

    profile_id: str | None = None
    device: Device | None = None
    duration: timedelta | None = None
    approver_ids: tuple[str, ...] = ()
    reason: str = ""
    extends_request_id: int | None = None


@dataclass(frozen=True, slots=True)
class RequestForm:
    """The values of a submitted (or partly filled) modal."""

    profile_id: str | None
    device_id: str | None
    duration: timedelta | None
    approver_ids: list[str] = field(default_factory=list)
    reason: str = ""


def _value(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    return (values.get(block) or {}).get(action) or {}


def read_form(state_values: dict[str, Any]) -> RequestForm:
    """Read the modal's ``view.state.values`` into a ``RequestForm``."""
    profile = (_value(state_values, BlockId.PROFILE, ActionId.PROFILE_SELECT).get("selected_option") or {}).get("value")
    device = (_value(state_values, BlockId.DEVICE, ActionId.DEVICE_SELECT).get("selected_option") or {}).get("value")
    duration_raw = (_value(state_values, BlockId.DURATION, ActionId.DURATION_SELECT).get("selected_option") or {}).get(
        "value"
    )
    approver_state = _value(state_values, BlockId.APPROVER, ActionId.APPROVER_SELECT)
    approvers = [o["value"] for o in approver_state.get("selected_options") or [] if o.get("value")]
    single = (approver_state.get("selected_option") or {}).get("value")
    if single:
        approvers = [single]
    reason = _value(state_values, BlockId.REASON, ActionId.REASON_INPUT).get("value") or ""
    duration = None
    if duration_raw and str(duration_raw).isascii() and str(duration_raw).isdigit() and len(str(duration_raw)) <= 9:
        duration = timedelta(seconds=int(duration_raw))
    return RequestForm(profile, device, duration, approvers, reason)


def encode_metadata(extends_request_id: int | None) -> str:
    """``private_metadata`` of the modal (≤ 3000 characters)."""
    return json.dumps({"extends": extends_request_id})


def decode_metadata(raw: str | None) -> int | None:
    """The request id this modal extends, if any (ignored when malformed)."""
    try:
        extends = json.loads(raw or "{}").get("extends")
    except (ValueError, AttributeError):
        return None
    return extends if isinstance(extends, int) else None


def request_modal(
    *,
    profiles: list[Profile],
    selected: Profile | None,
    approvers: list[tuple[str, str]],
    draft: RequestDraft | None = None,
) -> dict[str, Any]:
    """The request modal. ``approvers`` are (user id, display name) of the selected profile's approvers."""
    draft = draft or RequestDraft()
    blocks: list[dict[str, Any]] = []
    if not profiles:
        blocks.append(section("No access profiles are configured yet. Ask an accessbot admin to add one."))
        return _modal(blocks, draft, submit=False)
    profile_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.PROFILE_SELECT,
        "placeholder": plain("Choose what you need"),
        "options": [option(f"{p.label()}", p.id) for p in profiles[:100]],
    }
    if selected is not None:
        profile_select["initial_option"] = option(selected.label(), selected.id)
    blocks.append(
        {
            "type": "input",
            "block_id": BlockId.PROFILE,
            "dispatch_action": True,
            "label": plain("Access profile"),
            "element": profile_select,
        }
    )
    if selected is None:
        blocks.append(context("Choose a profile to see its devices, durations and approvers."))
        return _modal(blocks, draft, submit=True)
    value = json.dumps(selected.value) if not isinstance(selected.value, str) else f"'{selected.value}'"
    blocks.append(
        context(
            f"Sets `{selected.attribute} = {escape(value)}` on the device, for at most "
            f"{format_duration(selected.max_duration)}."
            + (f" Needs {selected.approvals_required} approvals." if selected.approvals_required > 1 else "")
        )
    )
    device_select: dict[str, Any] = {
        "type": "external_select",
        "action_id": ActionId.DEVICE_SELECT,
        "placeholder": plain("Type a device name, IP or tag"),
        "min_query_length": 0,
    }
    initial_device = device_option(draft.device) if draft.device is not None else None
    if initial_device is not None:
        device_select["initial_option"] = initial_device  # the same text as in the options list
    blocks.append({"type": "input", "block_id": BlockId.DEVICE, "label": plain("Device"), "element": device_select})
    durations = list(selected.offered_durations)
    initial_duration = draft.duration if draft.duration in durations else durations[0]
    blocks.append(
        {
            "type": "input",
            "block_id": BlockId.DURATION,
            "label": plain("For how long"),
            "element": {
                "type": "static_select",
                "action_id": ActionId.DURATION_SELECT,
                "options": [option(format_duration(d), str(int(d.total_seconds()))) for d in durations],
                "initial_option": option(format_duration(initial_duration), str(int(initial_duration.total_seconds()))),
            },
        }
    )
    blocks.append(_approver_block(selected, approvers, draft))
    reason: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ActionId.REASON_INPUT,
        "multiline": True,
        "max_length": 200,
        "placeholder": plain("What do you need it for?"),
    }
    if draft.reason:
        reason["initial_value"] = cut(draft.reason, 200)
    blocks.append({"type": "input", "block_id": BlockId.REASON, "label": plain("Reason"), "element": reason})
    return _modal(blocks, draft, submit=True)


def _approver_block(profile: Profile, approvers: list[tuple[str, str]], draft: RequestDraft) -> dict[str, Any]:
    if not approvers:
        return section(
            f"*Approver*\nNo approver of {escape(profile.label())} could be found in this workspace. "
            "Ask an accessbot admin to check the profile's approvers.",
            block_id=BlockId.APPROVER,
        )
    options = [option(name, uid) for uid, name in approvers[:100]]
    chosen = [o for o in options if o["value"] in draft.approver_ids]
    multi = profile.approvals_required > 1
    element: dict[str, Any] = {
        "type": "multi_static_select" if multi else "static_select",
        "action_id": ActionId.APPROVER_SELECT,
        "placeholder": plain("Who should approve?"),
        "options": options,
    }
    if multi and chosen:
        element["initial_options"] = chosen
    elif chosen:
        element["initial_option"] = chosen[0]
    label = f"Approvers ({profile.approvals_required} needed)" if multi else "Approver"
    return {"type": "input", "block_id": BlockId.APPROVER, "label": plain(label), "element": element}


def _modal(blocks: list[dict[str, Any]], draft: RequestDraft, *, submit: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CallbackId.REQUEST_MODAL,
        "title": plain(TITLE, 24),
        "close": plain("Cancel"),
        "private_metadata": encode_metadata(draft.extends_request_id),
        "blocks": blocks,
    }
    if submit:
        view["submit"] = plain("Request")
    return view


def deny_modal(request_id: int, summary: str) -> dict[str, Any]:
    """The small modal asking an approver for an optional reason to deny."""
    return {
        "type": "modal",
        "callback_id": CallbackId.DENY_MODAL,
        "title": plain("Deny request", 24),
        "submit": plain("Deny"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps({"request_id": request_id}),
        "blocks": [
            section(summary),
            {
                "type": "input",
                "block_id": BlockId.DENY_REASON,
                "optional": True,
                "label": plain("Reason (shown to the requester)"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.DENY_REASON_INPUT,
                    "multiline": True,
                    "max_length": 500,
                },
            },
        ],
    }


def notice_modal(title: str, text: str) -> dict[str, Any]:
    """A modal that only tells something (used where an ephemeral message cannot be posted)."""
    return {"type": "modal", "title": plain(title, 24), "close": plain("OK"), "blocks": [section(text)]}
