"""A loopback fake of Kandji's (Iru's) Prism device information API, for end-to-end tests and benchmarks.

``FakeKandji`` serves ``GET /api/v1/prism/device_information`` on 127.0.0.1 as the vendor documents it
(MScottBlake/kandji-openapi, 923b4b5): ``Authorization: Bearer <token>``; ``limit`` capped at the hard upper
limit of 300 and ``offset`` paging; ``{"cursor": null, "data": [...], "limit", "offset", "total"}``; the
Prism field names (``device__name``, ``device__family``...). Every answer carries Kong's rate-limit headers
(``RateLimit-*``, ``X-RateLimit-{Limit,Remaining}-{Second,Hour}``); over the limit it answers 429 with Kong's
``{"message": "API rate limit exceeded"}``, ``RateLimit-Reset`` and (unless told not to) ``Retry-After``.
A wrong token gets 401 ``{"detail": ...}`` (Django REST style; the real wording is unverified).
Request log, ``fail_next``/``stall_next`` and ``set_agents`` come from ``tests.fakes.vendors``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.vendors import BASE_TIME, UNSET, Answer, Json, _FakeVendor, default_serial

KANDJI_TOKEN = "kandji-test-api-token-0123456789"
KANDJI_DEVICES = "/api/v1/prism/device_information"
HARD_LIMIT = 300
HOURLY_LIMIT = 10_000


def _iso(seconds_ago: int) -> str:
    return (BASE_TIME - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def kandji_device(i: int, serial: str | None = UNSET, **overrides: Any) -> Json:
    """A realistic Prism device information row (a Mac with the agent); ``overrides`` replace fields."""
    device: Json = {
        "agent_installed": True,
        "agent_version": "5.1.2",
        "apple_silicon": True,
        "asset_tag": "",
        "blueprint_id": "9c74bc56-9452-4c41-81ad-4bed3fe3f857",
        "blueprint_name": "Standard Macs",
        "created_at": "2026-05-05T11:00:00.000000+00:00",
        "device__family": "Mac",
        "device__name": f"host-{i:05d}",
        "device__user_email": f"user{i}@example.com",
        "device__user_name": f"User {i}",
        "device_id": f"00008347-0695-4145-b0dc-{i:012x}",
        "display_os_version": "15.6.1",
        "first_enrollment_date": "2026-05-05T11:00:00.000000+00:00",
        "last_checkin": _iso(i % 3600),
        "last_checkin_agent": _iso(i % 3600),
        "last_checkin_mdm": _iso(i % 3600 + 60),
        "mdm_enabled": True,
        "model": "Mac",
        "model_name": "MacBook Pro (14-inch, 2024)",
        "os_build": "24G90",
        "os_version": "15.6.1",
        "serial_number": default_serial(i) if serial is UNSET else serial,
        "tags": None,
        "updated_at": _iso(i % 3600),
    }
    device.update(overrides)
    return device


class FakeKandji(_FakeVendor):
    """A local Kandji tenant API; use as a context manager and give ``url`` as the API URL.

    ``rate_limit_per_minute`` is here the per-SECOND limit (Kong's ``X-RateLimit-Limit-Second``; ``None``:
    off), counted over ``rate_limit_window`` (default 1 s) on ``clock``. ``send_retry_after=False`` leaves
    ``Retry-After`` off 429s, so only ``RateLimit-Reset`` tells the wait.
    """

    name = "fake-kandji"

    def __init__(
        self,
        agents: Iterable[Json] = (),
        *,
        api_token: str = KANDJI_TOKEN,
        rate_limit_per_second: int | None = None,
        rate_limit_window: float = 1.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            agents,
            rate_limit_per_minute=rate_limit_per_second,
            rate_limit_window=rate_limit_window,
            send_retry_after=send_retry_after,
            clock=clock,
        )
        self.api_token = api_token
        self._served = 0
        self._sorted: dict[str, list[Json]] = {}

    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer:
        status, body, headers = super()._handle(handler)
        limit = self.rate_limit_per_minute or 50
        with self._lock:
            in_window = len(self._window)
            if status != 429:
                self._served += 1
            served = self._served
            oldest = self._window[0] if self._window else None
        reset = 1
        if oldest is not None:
            reset = max(1, math.ceil(oldest + self.rate_limit_window - self.clock()))
        kong = {
            "Via": "kong/3.2.2",
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(max(0, limit - in_window)),
            "RateLimit-Reset": str(reset),
            "X-RateLimit-Limit-Second": str(limit),
            "X-RateLimit-Remaining-Second": str(max(0, limit - in_window)),
            "X-RateLimit-Limit-Hour": str(HOURLY_LIMIT),
            "X-RateLimit-Remaining-Hour": str(max(0, HOURLY_LIMIT - served)),
        }
        return status, body, kong | headers

    def _reindex(self) -> None:
        self._sorted.clear()

    def _rows(self, sort_by: str | None) -> list[Json]:
        """The devices in ``sort_by`` order (``-field``: descending), sorted once per agent set."""
        with self._lock:
            agents = self._agents
            if not sort_by:
                return agents
            rows = self._sorted.get(sort_by)
            if rows is None:
                field, reverse = sort_by.lstrip("-"), sort_by.startswith("-")
                rows = sorted(agents, key=lambda a: str(a.get(field, "")), reverse=reverse)
                self._sorted[sort_by] = rows
            return rows

    def _authorized(self, header: str | None) -> bool:
        return header == f"Bearer {self.api_token}"

    def _error_body(self, status: int, message: str) -> bytes:
        if status == 429:
            return b'{"message":"API rate limit exceeded"}'
        if status == 401:
            return b'{"detail":"Incorrect authentication credentials."}'
        return json.dumps({"detail": message}).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") != KANDJI_DEVICES:
            return 404, self._error_body(404, "Not found."), {}
        limit_text = params.get("limit", "300")
        offset_text = params.get("offset", "0")
        if not limit_text.isdigit() or int(limit_text) < 1:
            return 400, self._error_body(400, "limit must be a positive integer"), {}
        if not offset_text.isdigit():
            return 400, self._error_body(400, "offset must be a non-negative integer"), {}
        limit = min(int(limit_text), HARD_LIMIT)  # the documented hard upper limit
        offset = int(offset_text)
        sort_by = params.get("sort_by")
        with self._lock:
            generation = self._generation
        rows = self._rows(sort_by)
        total = len(rows)

        def build() -> list[Json]:
            return rows[offset : offset + limit]

        page = self._page(("k", generation, sort_by, offset, limit), build)
        tail = json.dumps({"limit": limit, "offset": offset, "total": total}, separators=(",", ":")).encode()
        return 200, b'{"cursor":null,"data":' + page + b"," + tail[1:], {}
