"""What every on-call adapter answers: an ``OnCallMatch`` (or ``None``), or an ``OnCallError`` it could not help.

The lookup decides whether a request is approved without a person, so the adapters are strict about what they
read (only the configured schedules or policies, only the requester's exact email) and quick to give up: one
short ``ONCALL_RETRY`` budget, after which the caller takes the normal approval path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from app.core.http import RetryPolicy

ONCALL_RETRY = RetryPolicy(max_attempts=3, budget=8.0, base=0.5, cap=2.0, max_retry_after=4.0, min_attempt=1.0)
"""A lookup runs after the Slack acknowledgement but a person waits for its outcome: three tries, eight seconds
in all; a provider that asks for a longer wait is treated as down (the request goes to the approvers)."""
ONCALL_TIMEOUT = httpx.Timeout(4.0, connect=2.0)
"""Timeouts of one attempt (each is also cut to what is left of ``ONCALL_RETRY.budget``)."""


class OnCallError(Exception):
    """A lookup that could not be answered; ``message`` is fit for a log line (never contains credentials)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OnCallAuthError(OnCallError):
    """The provider refused the token (401/403)."""


class OnCallUnavailable(OnCallError):
    """Rate limits, 5xx, timeouts or connection errors that outlasted ``ONCALL_RETRY``."""


class OnCallDataError(OnCallError):
    """The provider answered something that is not what its API documents."""


@dataclass(frozen=True, slots=True)
class OnCallMatch:
    """The requester is on call: for which provider and schedule (or escalation policy), in which window.

    ``start``/``end`` are ``None`` when the provider does not tell (a user who is always on call for a
    PagerDuty escalation rule; an Opsgenie timeline that could not be read).
    """

    provider: str
    schedule: str
    """The id (or Opsgenie name) as configured."""
    schedule_name: str | None = None
    kind: str = "schedule"
    """``schedule`` or ``escalation_policy``."""
    start: datetime | None = None
    end: datetime | None = None
    escalation_level: int | None = None

    @property
    def label(self) -> str:
        """The schedule's name when known, else its id."""
        return self.schedule_name or self.schedule

    def as_json(self) -> dict[str, Any]:
        """The ``access_requests.auto_approval`` value (and the audit event's details)."""
        return {
            "provider": self.provider,
            "schedule": self.schedule,
            "schedule_name": self.schedule_name,
            "kind": self.kind,
            "window_start": self.start.isoformat() if self.start else None,
            "window_end": self.end.isoformat() if self.end else None,
            "escalation_level": self.escalation_level,
        }
