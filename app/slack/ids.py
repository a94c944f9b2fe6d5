"""Callback, block and action ids of every Slack surface accessbot builds."""

from __future__ import annotations

from enum import StrEnum


class CallbackId(StrEnum):
    """Shortcut and view callback ids."""

    REQUEST_SHORTCUT = "request_tailscale_access"
    REQUEST_MODAL = "access_request"
    DENY_MODAL = "access_deny"
    CONNECT_MODAL = "posture_connect"


class BlockId(StrEnum):
    """Input block ids of the request modal (also the field names of submission errors)."""

    PROFILE = "profile"
    DEVICE = "device"
    DURATION = "duration"
    APPROVER = "approver"
    REASON = "reason"
    DENY_REASON = "deny_reason"
    REQUEST_ACTIONS = "request_actions"
    BREAK_GLASS = "break_glass"
    STARTS_AT = "starts_at"


class ActionId(StrEnum):
    """Action ids of selects and buttons."""

    PROFILE_SELECT = "profile_select"
    DEVICE_SELECT = "device_select"
    DURATION_SELECT = "duration_select"
    APPROVER_SELECT = "approver_select"
    REASON_INPUT = "reason_input"
    DENY_REASON_INPUT = "deny_reason_input"
    APPROVE = "approve_request"
    DENY = "deny_request"
    RETRY = "retry_grant"
    REVOKE = "revoke_grant"
    EXTEND = "extend_grant"
    NEW_REQUEST = "new_request"
    BREAK_GLASS_TOGGLE = "break_glass_toggle"
    MARK_REVIEWED = "mark_break_glass_reviewed"
    START_PICKER = "start_picker"
