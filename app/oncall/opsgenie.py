"""Opsgenie: is a person on call now for one of the configured schedules, and until when.

What this relies on (Opsgenie REST API v2, "Who is On Call API" and "Schedule API" reference):

- Auth ``Authorization: GenieKey <apiKey>`` (an API integration's key); base URL ``https://api.opsgenie.com``,
  ``https://api.eu.opsgenie.com`` for the EU instance.
- ``GET /v2/schedules/{identifier}/on-calls?scheduleIdentifierType=id|name&flat=true&date=<ISO 8601>`` answers
  ``{"data": {"_parent": {"id", "name", "enabled"}, "onCallRecipients": ["user@example.com", ...]}}``: with
  ``flat=true`` the recipients are usernames, which in Opsgenie are the users' emails.
- The on-calls answer has no window. ``GET /v2/schedules/{identifier}/timeline?identifierType=id|name&
  interval=1&intervalUnit=days&date=<ISO 8601>`` answers ``data.finalTimeline.rotations[].periods[]`` with
  ``startDate``, ``endDate`` and ``recipient`` (``type: user``, ``name``: the username); the period of the
  requester that covers now is the window. A rotation whose period covers now and goes on beyond the one-day
  interval is cut at the interval's end, so the end is "at least until". If the timeline cannot be read the
  match stands and the window is recorded as unknown.
- Errors: 401/403 ``{"message": "...", "took", "requestId"}``; 429 when throttled, with ``X-RateLimit-State:
  THROTTLED`` (no ``Retry-After``: the shared client backs off on its own).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from app.core.clock import Clock, utcnow
from app.core.http import RetryPolicy, Sleep
from app.oncall._http import OnCallHttp
from app.oncall.base import ONCALL_RETRY, OnCallDataError, OnCallError, OnCallMatch

log = logging.getLogger(__name__)

PROVIDER = "opsgenie"
DEFAULT_BASE_URL = "https://api.opsgenie.com"
EU_BASE_URL = "https://api.eu.opsgenie.com"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def identifier_type(schedule: str) -> str:
    """``id`` for a schedule given by its UUID, ``name`` for one given by name."""
    return "id" if _UUID.fullmatch(schedule.strip()) else "name"


def _time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class OpsgenieClient:
    """Looks people up in one Opsgenie account (an API integration key with read access to the schedules)."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        client: httpx.Client | None = None,
        policy: RetryPolicy = ONCALL_RETRY,
        sleep: Sleep = time.sleep,
        clock: Clock = utcnow,
    ) -> None:
        headers = {"Authorization": f"GenieKey {api_key}", "Accept": "application/json"}
        self.http = OnCallHttp(
            "Opsgenie", base_url, headers, api_key, client=client, policy=policy, sleep=sleep, clock=clock
        )

    def on_call(self, email: str, *, schedules: Sequence[str], at: datetime) -> OnCallMatch | None:
        """The first of ``schedules`` that has the requester on call at ``at`` (``None``: none has)."""
        wanted = email.strip().lower()
        for schedule in schedules:
            kind = identifier_type(schedule)
            path = f"/v2/schedules/{quote(schedule, safe='')}/on-calls"
            params = [("scheduleIdentifierType", kind), ("flat", "true"), ("date", at.isoformat(timespec="seconds"))]
            data = self._data(self.http.get_json(path, params), path)
            recipients = data.get("onCallRecipients") or []
            if not isinstance(recipients, list):
                raise OnCallDataError(f"Opsgenie API {path} answered onCallRecipients that is not a list")
            if wanted not in {str(r).strip().lower() for r in recipients}:
                continue
            parent = data.get("_parent") if isinstance(data.get("_parent"), dict) else {}
            start, end = self._window(schedule, kind, wanted, at)
            name = parent.get("name") or (schedule if kind == "name" else None)
            return OnCallMatch(PROVIDER, schedule, str(name) if name else None, "schedule", start, end)
        return None

    def verify(self) -> None:
        """One small request that proves the key and URL (``accessbot doctor``); ``OnCallError`` otherwise."""
        self.http.get_json("/v2/schedules", [("limit", "1")])

    def close(self) -> None:
        """Release the connection pool."""
        self.http.close()

    def _window(self, schedule: str, kind: str, email: str, at: datetime) -> tuple[datetime | None, datetime | None]:
        """The requester's timeline period covering ``at``; ``(None, None)`` when unknown."""
        path = f"/v2/schedules/{quote(schedule, safe='')}/timeline"
        params = [
            ("identifierType", kind),
            ("interval", "1"),
            ("intervalUnit", "days"),
            ("date", at.isoformat(timespec="seconds")),
        ]
        try:
            data = self._data(self.http.get_json(path, params), path)
        except OnCallError as exc:
            log.warning("on-call window unknown: %s", exc.message)
            return None, None
        final = data.get("finalTimeline") if isinstance(data.get("finalTimeline"), dict) else {}
        rotations = [r for r in final.get("rotations") or [] if isinstance(r, dict)]
        for period in (p for r in rotations for p in r.get("periods") or []):
            if _covers(period, email, at):
                return _time(period.get("startDate")), _time(period.get("endDate"))
        return None, None

    @staticmethod
    def _data(body: dict[str, Any], path: str) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, dict):
            raise OnCallDataError(f"Opsgenie API {path} answered without a data object")
        return data


def _covers(period: Any, email: str, at: datetime) -> bool:
    """Whether a timeline period is the requester's (as a user recipient) and covers ``at``."""
    if not isinstance(period, dict):
        return False
    recipient = period.get("recipient") if isinstance(period.get("recipient"), dict) else {}
    if recipient.get("type") != "user" or str(recipient.get("name", "")).strip().lower() != email:
        return False
    start, end = _time(period.get("startDate")), _time(period.get("endDate"))
    return start is not None and end is not None and start <= at < end
