"""How a request approved by an on-call schedule names its approver: the schedule and its on-call window."""

from __future__ import annotations

from datetime import datetime

from app.access.read_model import AccessRequest
from app.slack.views.blockkit import escape, when

NAME_LIMIT = 200
"""Room for a schedule's name inside the sentence (escaped)."""
PROVIDERS = {"pagerduty": "PagerDuty", "opsgenie": "Opsgenie"}


def approved_by(request: AccessRequest, people: str) -> str:
    """``on-call schedule *Primary* (PagerDuty, on call until …)`` for an auto-approved request, else ``people``."""
    info = request.auto_approval
    if not info:
        return people
    provider = PROVIDERS.get(str(info.get("provider")), str(info.get("provider")))
    name = escape(str(info.get("schedule_name") or info.get("schedule") or "?"), NAME_LIMIT)
    kind = "escalation policy" if info.get("kind") == "escalation_policy" else "schedule"
    end = _moment(info.get("window_end"))
    until = f"on call until {when(end)}" if end is not None else "on-call window not told by the provider"
    return f"on-call {kind} *{name}* ({provider}, {until})"


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
