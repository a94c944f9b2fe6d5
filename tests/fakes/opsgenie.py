"""A loopback fake of the Opsgenie REST API v2 parts accessbot reads: a schedule's on-calls and its timeline.

It answers like the real service: ``Authorization: GenieKey <key>`` or 401 ``{"message": "Could not
authenticate", "took", "requestId"}``; schedules by id or by name (``scheduleIdentifierType`` for on-calls,
``identifierType`` for the timeline), 404 for an unknown one; ``flat=true`` recipients as usernames (emails);
the timeline's ``finalTimeline.rotations[].periods[]``; 429 with ``X-RateLimit-State: THROTTLED`` (no
``Retry-After``) when ``refuse(429)`` is queued.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.loopback import LoopbackServer, QuietHandler, send_json


@dataclass
class Period:
    """One timeline period: ``email`` is on call from ``start`` to ``end``."""

    email: str
    start: datetime
    end: datetime


@dataclass
class Schedule:
    id: str
    name: str
    periods: list[Period] = field(default_factory=list)

    def on_call_at(self, at: datetime) -> list[str]:
        return [p.email for p in self.periods if p.start <= at < p.end]


class _Handler(QuietHandler):
    server: Any

    def do_GET(self) -> None:
        fake: FakeOpsgenie = self.server.fake
        status, body, headers = fake.answer(self.path, dict(self.headers))
        send_json(self, status, json.dumps(body).encode(), headers)


class FakeOpsgenie(LoopbackServer):
    """The fake account: add schedules with periods; read ``requests`` afterwards."""

    name = "fake-opsgenie"
    handler_class = _Handler

    def __init__(self, key: str = "og-test-key-0123") -> None:
        self.key = key
        self.schedules: dict[str, Schedule] = {}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.refusals: list[int] = []
        self.stall = 0.0
        self._lock = threading.Lock()

    def add_schedule(self, name: str, *periods: Period, schedule_id: str | None = None) -> Schedule:
        schedule = Schedule(schedule_id or str(uuid.uuid4()), name, list(periods))
        self.schedules[schedule.id] = schedule
        return schedule

    def refuse(self, status: int, times: int = 1) -> None:
        self.refusals.extend([status] * times)

    def answer(self, raw_path: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self.stall:
            time.sleep(self.stall)
        url = urlsplit(raw_path)
        params = parse_qs(url.query)
        with self._lock:
            self.requests.append((url.path, params))
            refusal = self.refusals.pop(0) if self.refusals else None
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"GenieKey {self.key}":
            return 401, _body({"message": "Could not authenticate"}), {}
        if refusal == 429:
            limit = {
                "X-RateLimit-State": "THROTTLED",
                "X-RateLimit-Reason": "ACCOUNT",
                "X-RateLimit-Period-In-Sec": "60",
            }
            return 429, _body({"message": "You are making too many requests!"}), limit
        if refusal is not None:
            return refusal, _body({"message": "Internal Server Error"}), {}
        parts = url.path.strip("/").split("/")
        if parts == ["v2", "schedules"]:
            return 200, _body({"data": [self._parent(s) for s in self.schedules.values()]}), {}
        if len(parts) == 4 and parts[:2] == ["v2", "schedules"] and parts[3] in ("on-calls", "timeline"):
            kind_param = "scheduleIdentifierType" if parts[3] == "on-calls" else "identifierType"
            schedule = self._find(unquote(parts[2]), (params.get(kind_param) or ["id"])[0])
            if schedule is None:
                return 404, _body({"message": f"No schedule exists with identifier [{unquote(parts[2])}]"}), {}
            at = datetime.fromisoformat((params.get("date") or [""])[0])
            if parts[3] == "on-calls":
                return 200, self._on_calls(schedule, at, (params.get("flat") or ["false"])[0] == "true"), {}
            return 200, self._timeline(schedule, at), {}
        return 404, _body({"message": "Not found"}), {}

    def _find(self, ident: str, kind: str) -> Schedule | None:
        if kind == "name":
            return next((s for s in self.schedules.values() if s.name == ident), None)
        return self.schedules.get(ident)

    @staticmethod
    def _parent(schedule: Schedule) -> dict[str, Any]:
        return {"id": schedule.id, "name": schedule.name, "enabled": True}

    def _on_calls(self, schedule: Schedule, at: datetime, flat: bool) -> dict[str, Any]:
        emails = schedule.on_call_at(at)
        data: dict[str, Any] = {"_parent": self._parent(schedule)}
        if flat:
            data["onCallRecipients"] = emails
        else:
            data["onCallParticipants"] = [
                {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, e)), "name": e, "type": "user"} for e in emails
            ]
        return _body({"data": data})

    def _timeline(self, schedule: Schedule, at: datetime) -> dict[str, Any]:
        periods = [
            {
                "startDate": p.start.isoformat().replace("+00:00", "Z"),
                "endDate": p.end.isoformat().replace("+00:00", "Z"),
                "type": "default",
                "recipient": {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, p.email)), "type": "user", "name": p.email},
            }
            for p in schedule.periods
        ]
        rotation = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, schedule.id)),
            "name": "Primary rotation",
            "order": 1,
            "periods": periods,
        }
        return _body(
            {
                "data": {
                    "_parent": self._parent(schedule),
                    "startDate": at.isoformat(),
                    "finalTimeline": {"rotations": [rotation]},
                }
            }
        )


def _body(content: dict[str, Any]) -> dict[str, Any]:
    return {**content, "took": 0.012, "requestId": str(uuid.uuid4())}
