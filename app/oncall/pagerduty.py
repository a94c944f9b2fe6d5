"""PagerDuty: is a person on call now for one of the configured schedules or escalation policies.

What this relies on (PagerDuty REST API v2, checked against its API reference and client libraries):

- Auth ``Authorization: Token token=<key>``, ``Accept: application/vnd.pagerduty+json;version=2``; base URL
  ``https://api.pagerduty.com`` (EU accounts use the same API host).
- ``GET /users?query=<email>`` lists users whose name or email matches (classic paging: ``limit``, ``offset``,
  ``more``); only a user whose ``email`` equals the requester's (case-insensitive) counts.
- ``GET /oncalls`` with ``user_ids[]``, ``schedule_ids[]`` or ``escalation_policy_ids[]`` and ``earliest=true``;
  without ``since``/``until`` it lists the on-calls of *now*. Each entry has ``escalation_policy`` and
  ``schedule`` references (``id``, ``summary``; ``schedule`` is ``null`` for a user who is a direct target of
  an escalation rule), ``escalation_level``, and ``start``/``end`` (ISO 8601; ``null`` when always on call).
  Paging as above. The filters are intersected, so schedules and escalation policies are asked separately.
- Errors: 401 ``{"error": {"message": "Unauthorized", "code": 2006}}``; 429 when rate limited (the shared
  client honours ``Retry-After``, else backs off).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx

from app.core.clock import Clock, utcnow
from app.core.http import RetryPolicy, Sleep
from app.oncall._http import OnCallHttp, Params
from app.oncall.base import ONCALL_RETRY, OnCallDataError, OnCallMatch

PROVIDER = "pagerduty"
DEFAULT_BASE_URL = "https://api.pagerduty.com"
PAGE_SIZE = 100
MAX_PAGES = 20
"""A lookup reads at most this many pages of one listing (2,000 entries): more means a filter is wrong."""


def _time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise OnCallDataError(f"PagerDuty API /oncalls answered an unreadable {field} {value!r}") from None
    if parsed.tzinfo is None:
        raise OnCallDataError(f"PagerDuty API /oncalls answered {field} {value!r} without a time zone")
    return parsed


class PagerDutyClient:
    """Looks people up in one PagerDuty account (a read-only REST API key is enough)."""

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        client: httpx.Client | None = None,
        policy: RetryPolicy = ONCALL_RETRY,
        sleep: Sleep = time.sleep,
        clock: Clock = utcnow,
    ) -> None:
        headers = {
            "Authorization": f"Token token={token}",
            "Accept": "application/vnd.pagerduty+json;version=2",
        }
        self.http = OnCallHttp(
            "PagerDuty", base_url, headers, token, client=client, policy=policy, sleep=sleep, clock=clock
        )

    def on_call(
        self,
        email: str,
        *,
        schedule_ids: Sequence[str] = (),
        escalation_policy_ids: Sequence[str] = (),
        at: datetime,
    ) -> OnCallMatch | None:
        """The requester's on-call entry for one of these schedules or policies at ``at`` (``None``: not on call)."""
        user_id = self.user_id(email)
        if user_id is None:
            return None
        user = [("user_ids[]", user_id)]
        if schedule_ids:
            params = [*user, *(("schedule_ids[]", s) for s in schedule_ids)]
            match = self._best(params, at, lambda e: _ref_id(e, "schedule") in schedule_ids, "schedule")
            if match is not None:
                return match
        if escalation_policy_ids:
            params = [*user, *(("escalation_policy_ids[]", p) for p in escalation_policy_ids)]
            wanted = lambda e: _ref_id(e, "escalation_policy") in escalation_policy_ids  # noqa: E731
            return self._best(params, at, wanted, "escalation_policy")
        return None

    def user_id(self, email: str) -> str | None:
        """The id of the user whose email is exactly ``email`` (case-insensitive), ``None`` if there is none."""
        wanted = email.strip().lower()
        for user in self._pages("/users", [("query", wanted)], "users"):
            if isinstance(user, dict) and str(user.get("email", "")).lower() == wanted and user.get("id"):
                return str(user["id"])
        return None

    def verify(self) -> None:
        """One small request that proves the token and URL (``accessbot doctor``); ``OnCallError`` otherwise."""
        self.http.get_json("/users", [("limit", "1")])

    def close(self) -> None:
        """Release the connection pool."""
        self.http.close()

    def _best(self, params: Params, at: datetime, wanted: Any, kind: str) -> OnCallMatch | None:
        """Of the entries covering ``at`` that ``wanted`` accepts, the one lasting longest."""
        best: OnCallMatch | None = None
        for entry in self._pages("/oncalls", [*params, ("earliest", "true")], "oncalls"):
            if not isinstance(entry, dict) or not wanted(entry):
                continue
            start, end = _time(entry.get("start"), "start"), _time(entry.get("end"), "end")
            if (start is not None and start > at) or (end is not None and end <= at):
                continue
            ref = entry.get(kind) or {}
            level = entry.get("escalation_level")
            match = OnCallMatch(
                provider=PROVIDER,
                schedule=str(ref.get("id")),
                schedule_name=str(ref["summary"]) if ref.get("summary") else None,
                kind=kind,
                start=start,
                end=end,
                escalation_level=level if isinstance(level, int) else None,
            )
            if best is None or _longer(match, best):
                best = match
        return best

    def _pages(self, path: str, params: Params, field: str) -> Iterator[Any]:
        """Every item of a classic-paged listing (``offset``/``limit``/``more``), at most ``MAX_PAGES`` pages."""
        offset = 0
        for _ in range(MAX_PAGES):
            body = self.http.get_json(path, [*params, ("limit", str(PAGE_SIZE)), ("offset", str(offset))])
            items = body.get(field)
            if not isinstance(items, list):
                raise OnCallDataError(f"PagerDuty API {path} answered without a {field} list")
            yield from items
            if body.get("more") is not True or not items:
                return
            offset += len(items)


def _ref_id(entry: dict[str, Any], kind: str) -> str | None:
    ref = entry.get(kind)
    return str(ref.get("id")) if isinstance(ref, dict) and ref.get("id") else None


def _longer(candidate: OnCallMatch, best: OnCallMatch) -> bool:
    """Open-ended beats any end; otherwise the later end wins."""
    if best.end is None:
        return False
    return candidate.end is None or candidate.end > best.end
