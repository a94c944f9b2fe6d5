"""A loopback fake of the PagerDuty REST API v2 parts accessbot reads: ``GET /users`` and ``GET /oncalls``.

It answers like the real service: ``Authorization: Token token=...`` or 401 ``{"error": {"message":
"Unauthorized", "code": 2006}}``; classic paging (``limit``, ``offset``, ``more``, ``total: null``); on-call
entries with ``escalation_policy``/``schedule``/``user`` references, ``escalation_level``, ``start``/``end``
(``null`` for always on call); ``user_ids[]``, ``schedule_ids[]`` and ``escalation_policy_ids[]`` intersected.
``refuse`` queues answers (429 with ``Retry-After``, 500s) served before the real ones; ``stall`` holds every
answer back (a provider that hangs).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer, QuietHandler, send_json

MAX_LIMIT = 100


@dataclass
class OnCallEntry:
    """One on-call of the fake account (``schedule_id`` ``None``: a direct target of the escalation rule)."""

    user_id: str
    policy_id: str
    schedule_id: str | None = None
    level: int = 1
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class _State:
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, email)
    schedules: dict[str, str] = field(default_factory=dict)  # id -> name
    policies: dict[str, str] = field(default_factory=dict)  # id -> name
    oncalls: list[OnCallEntry] = field(default_factory=list)


class _Handler(QuietHandler):
    server: Any

    def do_GET(self) -> None:
        fake: FakePagerDuty = self.server.fake
        status, body, headers = fake.answer(self.path, dict(self.headers))
        send_json(self, status, json.dumps(body).encode(), headers)


class FakePagerDuty(LoopbackServer):
    """The fake account: add users, schedules, policies and on-calls; read ``requests`` afterwards."""

    name = "fake-pagerduty"
    handler_class = _Handler

    def __init__(self, token: str = "pd-test-token-0123") -> None:
        self.token = token
        self.state = _State()
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.refusals: list[tuple[int, dict[str, str]]] = []
        self.stall = 0.0
        self._lock = threading.Lock()

    # -- the account ----------------------------------------------------------------------------------

    def add_user(self, user_id: str, email: str, name: str = "") -> None:
        self.state.users[user_id] = (name or email.split("@")[0].title(), email)

    def add_schedule(self, schedule_id: str, name: str) -> None:
        self.state.schedules[schedule_id] = name

    def add_policy(self, policy_id: str, name: str) -> None:
        self.state.policies[policy_id] = name

    def put_on_call(self, entry: OnCallEntry) -> None:
        self.state.oncalls.append(entry)

    def refuse(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``headers``), before any real answer."""
        self.refusals.extend([(status, dict(headers or {}))] * times)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    # -- answering ------------------------------------------------------------------------------------

    def answer(self, raw_path: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self.stall:
            time.sleep(self.stall)
        url = urlsplit(raw_path)
        params = parse_qs(url.query)
        with self._lock:
            self.requests.append((url.path, params))
            refusal = self.refusals.pop(0) if self.refusals else None
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"Token token={self.token}":
            return 401, {"error": {"message": "Unauthorized", "code": 2006}}, {}
        if refusal is not None:
            status, extra = refusal
            if status == 429:
                return 429, {"error": {"message": "Rate Limit Exceeded", "code": 2020}}, extra
            return status, {"error": {"message": "Internal Server Error", "code": 2001}}, extra
        if url.path == "/users":
            return 200, self._page(self._users(params), params, "users"), {}
        if url.path == "/oncalls":
            return 200, self._page(self._oncalls(params), params, "oncalls"), {}
        return 404, {"error": {"message": "Not Found", "code": 2100}}, {}

    def _users(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        query = (params.get("query") or [""])[0].lower()
        return [
            {"id": uid, "type": "user", "name": name, "email": email, "summary": name}
            for uid, (name, email) in sorted(self.state.users.items())
            if query in name.lower() or query in email.lower()
        ]

    def _oncalls(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        users, schedules = params.get("user_ids[]"), params.get("schedule_ids[]")
        policies = params.get("escalation_policy_ids[]")
        out = []
        for entry in self.state.oncalls:
            if (users and entry.user_id not in users) or (policies and entry.policy_id not in policies):
                continue
            if schedules and entry.schedule_id not in schedules:
                continue
            out.append(self._entry(entry))
        return out

    def _entry(self, entry: OnCallEntry) -> dict[str, Any]:
        name, _ = self.state.users.get(entry.user_id, ("?", "?"))
        schedule = None
        if entry.schedule_id is not None:
            summary = self.state.schedules.get(entry.schedule_id, entry.schedule_id)
            schedule = {"id": entry.schedule_id, "type": "schedule_reference", "summary": summary}
        policy = self.state.policies.get(entry.policy_id, entry.policy_id)
        return {
            "escalation_policy": {"id": entry.policy_id, "type": "escalation_policy_reference", "summary": policy},
            "escalation_level": entry.level,
            "schedule": schedule,
            "user": {"id": entry.user_id, "type": "user_reference", "summary": name},
            "start": entry.start.isoformat() if entry.start else None,
            "end": entry.end.isoformat() if entry.end else None,
        }

    @staticmethod
    def _page(items: list[dict[str, Any]], params: dict[str, list[str]], field_name: str) -> dict[str, Any]:
        limit = min(int((params.get("limit") or ["25"])[0]), MAX_LIMIT)
        offset = int((params.get("offset") or ["0"])[0])
        chunk = items[offset : offset + limit]
        return {field_name: chunk, "limit": limit, "offset": offset, "more": offset + limit < len(items), "total": None}
