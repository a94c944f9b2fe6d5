"""The checks of a request form, field by field: pure functions over the profile and what the person chose."""

from __future__ import annotations

from datetime import timedelta

from app.config.profiles import Profile
from app.core.timefmt import format_duration

MAX_REASON = 200


def submission_errors(
    profile: Profile,
    *,
    requester_id: str,
    device_problem: str | None,
    duration: timedelta | None,
    approver_ids: list[str],
    eligible: set[str],
    reason: str,
) -> dict[str, str]:
    """Field name → what is wrong with it (empty when the form may be submitted).

    ``device_problem`` is already the device field's error (gone, or failing the required posture).
    """
    errors: dict[str, str] = {}
    if device_problem:
        errors["device"] = device_problem
    for field, error in (
        ("duration", duration_error(profile, duration)),
        ("approver", approver_error(profile, requester_id, approver_ids, eligible)),
        ("reason", reason_error(reason)),
    ):
        if error:
            errors[field] = error
    return errors


def duration_error(profile: Profile, duration: timedelta | None) -> str | None:
    """Why ``duration`` cannot be asked for under ``profile`` (``None``: it can)."""
    if duration is None:
        return "Choose a duration."
    if duration > profile.max_duration:
        return f"{profile.label()} allows at most {format_duration(profile.max_duration)}."
    if duration not in profile.offered_durations:
        offered = ", ".join(format_duration(d) for d in profile.offered_durations)
        return f"Choose one of the offered durations: {offered}."
    return None


def approver_error(profile: Profile, requester_id: str, approver_ids: list[str], eligible: set[str]) -> str | None:
    """Why the chosen approvers cannot decide the request (``None``: they can)."""
    if not approver_ids:
        return "Choose who should approve."
    if requester_id in approver_ids and not profile.self_approval:
        return "You cannot approve your own request for this profile; choose someone else."
    if any(a not in eligible for a in approver_ids):
        return f"Only the approvers of {profile.label()} can approve it."
    others = set(approver_ids) - ({requester_id} if not profile.self_approval else set())
    if len(others) < min(profile.approvals_required, len(eligible)):
        return f"This profile needs {profile.approvals_required} approvals; choose enough approvers."
    return None


def reason_error(reason: str) -> str | None:
    """Why ``reason`` cannot be stored (``None``: it can, once stripped)."""
    cleaned = reason.strip()
    if not cleaned:
        return "Say why you need access."
    if len(cleaned) > MAX_REASON:
        return f"Keep the reason to {MAX_REASON} characters (it has {len(cleaned)})."
    if "\x00" in cleaned or cleaned.encode("utf-8", "replace").decode("utf-8") != cleaned:
        return "The reason contains characters that cannot be stored; please retype it."
    return None
