"""The "Request Tailscale Access" modal and the reading of its submitted state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.access.eligibility import scope_hint
from app.config.profiles import Profile
from app.core.timefmt import format_duration
from app.posture.unlock import Unlock
from app.slack.ids import ActionId, BlockId, CallbackId
from app.slack.views.blockkit import (
    MORE_VALUE,
    TEXT_INPUT_LENGTH_MAX,
    Block,
    context,
    cut,
    escape,
    input_block,
    modal,
    option,
    placeholder,
    section,
    static_select,
)
from app.slack.views.device_options import device_option
from app.slack.views.request_message import LABEL_LIMIT
from app.slack.views.unlock import unlock_blocks
from app.tailnet.models import Device

TITLE = "Request access"  # ≤ 24 characters
REASON_MAX_LENGTH = 200
BREAK_GLASS_VALUE = "break_glass"
DENY_REASON_MAX_LENGTH = 500
assert max(REASON_MAX_LENGTH, DENY_REASON_MAX_LENGTH) <= TEXT_INPUT_LENGTH_MAX


@dataclass(frozen=True, slots=True)
class RequestDraft:
    """What the modal is pre-filled with (the Extend button fills in the previous request)."""

    profile_id: str | None = None
    device: Device | None = None
    duration: timedelta | None = None
    approver_ids: tuple[str, ...] = ()
    reason: str = ""
    extends_request_id: int | None = None
    starts_at: datetime | None = None
    break_glass: bool = False


@dataclass(frozen=True, slots=True)
class RequestForm:
    """The values of a submitted (or partly filled) modal."""

    profile_id: str | None
    device_id: str | None
    duration: timedelta | None
    approver_ids: list[str] = field(default_factory=list)
    reason: str = ""
    break_glass: bool = False
    starts_at: datetime | None = None


def _value(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    return (values.get(block) or {}).get(action) or {}


def _chosen(value: Any) -> str | None:
    """A selected value, or ``None`` for nothing or the "…and N more" option of a capped list."""
    return None if value is None or value == MORE_VALUE else str(value)


def read_form(state_values: dict[str, Any]) -> RequestForm:
    """Read the modal's ``view.state.values`` into a ``RequestForm``."""
    profile = _chosen(
        (_value(state_values, BlockId.PROFILE, ActionId.PROFILE_SELECT).get("selected_option") or {}).get("value")
    )
    device = _chosen(
        (_value(state_values, BlockId.DEVICE, ActionId.DEVICE_SELECT).get("selected_option") or {}).get("value")
    )
    duration_raw = (_value(state_values, BlockId.DURATION, ActionId.DURATION_SELECT).get("selected_option") or {}).get(
        "value"
    )
    approver_state = _value(state_values, BlockId.APPROVER, ActionId.APPROVER_SELECT)
    approvers = [o["value"] for o in approver_state.get("selected_options") or [] if _chosen(o.get("value"))]
    single = _chosen((approver_state.get("selected_option") or {}).get("value"))
    if single:
        approvers = [single]
    reason = _value(state_values, BlockId.REASON, ActionId.REASON_INPUT).get("value") or ""
    duration = None
    if duration_raw and str(duration_raw).isascii() and str(duration_raw).isdigit() and len(str(duration_raw)) <= 9:
        duration = timedelta(seconds=int(duration_raw))
    glass = _value(state_values, BlockId.BREAK_GLASS, ActionId.BREAK_GLASS_TOGGLE).get("selected_options") or []
    broken = any(isinstance(o, dict) and o.get("value") == BREAK_GLASS_VALUE for o in glass)
    starts_at = read_start(_value(state_values, BlockId.STARTS_AT, ActionId.START_PICKER))
    return RequestForm(profile, device, duration, approvers, reason, break_glass=broken, starts_at=starts_at)


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
    unlock: Unlock | None = None,
) -> dict[str, Any]:
    """The request modal. ``approvers`` are (user id, display name) of the selected profile's approvers;
    ``unlock``, what the profile's attribute would open on the chosen device, is shown under the device.

    Profiles, durations and approvers are each capped at Slack's 100 options (the selected ones always shown).
    """
    draft = draft or RequestDraft()
    if not profiles:
        blocks = [section("No access profiles are configured yet. Ask an accessbot admin to add one.")]
        return _modal(blocks, draft, submit=False)
    blocks = [_profile_block(profiles, selected)]
    if selected is None:
        blocks.append(context("Choose a profile to see its devices, durations and approvers."))
        return _modal(blocks, draft, submit=True)
    blocks += [_profile_note(selected), _device_block(draft, scope_hint(selected))]
    if unlock is not None:
        blocks += unlock_blocks(unlock, requester=True)
    duration = _duration_block(selected, draft)
    if duration is not None:
        blocks.append(duration)
    blocks.append(start_block(selected, draft))
    blocks += [_approver_block(selected, approvers, draft), _reason_block(draft)]
    if selected.break_glass:
        blocks.append(break_glass_block(selected, draft))
    return _modal(blocks, draft, submit=True)


def _profile_block(profiles: list[Profile], selected: Profile | None) -> Block:
    """The profile select; choosing one refreshes the modal (``dispatch_action``)."""
    element = static_select(
        ActionId.PROFILE_SELECT,
        [option(p.label(), p.id) for p in profiles],
        initial=selected.id if selected is not None else None,
        placeholder_text="Choose what you need",
    )
    return input_block(BlockId.PROFILE, "Access profile", element, dispatch_action=True)


def _profile_note(selected: Profile) -> Block:
    """What the chosen profile sets, for how long at most, and how many approvals it needs."""
    value = json.dumps(selected.value) if not isinstance(selected.value, str) else f"'{selected.value}'"
    return context(
        f"Sets `{escape(selected.attribute, LABEL_LIMIT)} = {escape(value, LABEL_LIMIT)}` on the device, for at "
        f"most {format_duration(selected.max_duration)}."
        + (f" Needs {selected.approvals_required} approvals." if selected.approvals_required > 1 else "")
    )


def _device_block(draft: RequestDraft, hint: str | None = None) -> Block:
    """The device picker, its options loaded as the person types (``external_select``); choosing one refreshes
    the modal (``dispatch_action``) to show what the profile would unlock on it."""
    element: dict[str, Any] = {
        "type": "external_select",
        "action_id": ActionId.DEVICE_SELECT,
        "placeholder": placeholder("Type a device name, IP or tag"),
        "min_query_length": 0,
    }
    initial = device_option(draft.device) if draft.device is not None else None
    if initial is not None:
        element["initial_option"] = initial  # the same text as in the options list
    return input_block(BlockId.DEVICE, "Device", element, hint=hint, dispatch_action=True)


def _duration_block(selected: Profile, draft: RequestDraft) -> Block | None:
    """The durations the profile offers (the draft's if it is one of them); ``None`` when it offers none."""
    glass = draft.break_glass and selected.break_glass
    durations = list(selected.break_glass_durations if glass else selected.offered_durations)
    if not durations:
        return None
    initial = draft.duration if draft.duration in durations else durations[0]
    element = static_select(
        ActionId.DURATION_SELECT,
        [option(format_duration(d), str(int(d.total_seconds()))) for d in durations],
        initial=str(int(initial.total_seconds())),
    )
    return input_block(BlockId.DURATION, "For how long", element)


def read_start(state: dict[str, Any]) -> datetime | None:
    """The picked start (``datetimepicker``'s ``selected_date_time``, UNIX seconds); ``None`` when empty or
    malformed (an out-of-range start is the service's field error, not a crash)."""
    raw = state.get("selected_date_time")
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 < raw < 2**37:
        return None
    return datetime.fromtimestamp(raw, UTC)


def start_block(selected: Profile, draft: RequestDraft) -> Block:
    """The optional start: empty starts the access once approved; picking one refreshes the hint with the end."""
    element: dict[str, Any] = {"type": "datetimepicker", "action_id": ActionId.START_PICKER}
    hint = (
        "Leave empty to start as soon as it is approved. With a start, approvers may approve ahead: access "
        "begins at the start and ends at the start plus the duration."
    )
    if draft.starts_at is not None:
        element["initial_date_time"] = int(draft.starts_at.timestamp())
        duration = draft.duration or (selected.offered_durations[0] if selected.offered_durations else None)
        if duration is not None:
            end = draft.starts_at + duration
            hint = (
                f"From {draft.starts_at:%Y-%m-%d %H:%M} UTC until {end:%Y-%m-%d %H:%M} UTC with "
                f"{format_duration(duration)}; a longer duration ends later. Empty: start when approved."
            )
    return input_block(BlockId.STARTS_AT, "Start (optional)", element, hint=hint, optional=True, dispatch_action=True)


def _reason_block(draft: RequestDraft) -> Block:
    """The reason, pre-filled from the draft (cut to the input's length)."""
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ActionId.REASON_INPUT,
        "multiline": True,
        "max_length": REASON_MAX_LENGTH,
        "placeholder": placeholder("What do you need it for?"),
    }
    if draft.reason:
        element["initial_value"] = cut(draft.reason, REASON_MAX_LENGTH, markup=False)
    return input_block(BlockId.REASON, "Reason", element)


def _approver_block(profile: Profile, approvers: list[tuple[str, str]], draft: RequestDraft) -> Block:
    if not approvers:
        return section(
            f"*Approver*\nNo approver of {escape(profile.label(), LABEL_LIMIT)} could be found in this workspace. "
            "Ask an accessbot admin to check the profile's approvers.",
            block_id=BlockId.APPROVER,
        )
    multi = profile.approvals_required > 1
    element = static_select(
        ActionId.APPROVER_SELECT,
        [option(name, uid) for uid, name in approvers],
        initial=list(draft.approver_ids) if multi else (draft.approver_ids[:1] or None),
        placeholder_text="Who should approve?",
        multi=multi,
    )
    label = f"Approvers ({profile.approvals_required} needed)" if multi else "Approver"
    # a break-glass request needs no approver (all are told), so Slack must let the field be left empty
    return input_block(BlockId.APPROVER, label, element, optional=True if profile.break_glass else None)


def break_glass_block(profile: Profile, draft: RequestDraft) -> Block:
    """The "break glass" checkbox of a break-glass profile; ticking it refreshes the modal (capped durations)."""
    choice = option(
        "Break glass: grant it now without waiting for approval",
        BREAK_GLASS_VALUE,
        description=f"At most {format_duration(profile.break_glass_cap)}; every approver is told at once",
    )
    element: dict[str, Any] = {"type": "checkboxes", "action_id": ActionId.BREAK_GLASS_TOGGLE, "options": [choice]}
    if draft.break_glass:
        element["initial_options"] = [choice]
    hint = (
        f"For emergencies only. The access is granted to you at once for at most "
        f"{format_duration(profile.break_glass_cap)}, announced to every approver"
        + (" and the notify channel" if profile.notify_channel else "")
        + f", and reviewed by an approver afterwards. The reason needs at least {profile.break_glass_min_reason} "
        "characters."
    )
    return input_block(BlockId.BREAK_GLASS, "Emergency", element, hint=hint, optional=True, dispatch_action=True)


def _modal(blocks: list[Block], draft: RequestDraft, *, submit: bool) -> dict[str, Any]:
    return modal(
        callback_id=CallbackId.REQUEST_MODAL,
        title=TITLE,
        close="Cancel",
        submit="Request" if submit else None,
        private_metadata=encode_metadata(draft.extends_request_id),
        blocks=blocks,
    )


def deny_modal(request_id: int, summary: str) -> dict[str, Any]:
    """The small modal asking an approver for an optional reason to deny (``summary`` is mrkdwn, cut to fit)."""
    reason = {
        "type": "plain_text_input",
        "action_id": ActionId.DENY_REASON_INPUT,
        "multiline": True,
        "max_length": DENY_REASON_MAX_LENGTH,
    }
    return modal(
        callback_id=CallbackId.DENY_MODAL,
        title="Deny request",
        submit="Deny",
        close="Cancel",
        private_metadata=json.dumps({"request_id": request_id}),
        blocks=[
            section(summary),
            input_block(BlockId.DENY_REASON, "Reason (shown to the requester)", reason, optional=True),
        ],
    )


def notice_modal(title: str, text: str) -> dict[str, Any]:
    """A modal that only tells something (used where an ephemeral message cannot be posted)."""
    return modal(title=title, close="OK", blocks=[section(text)])
