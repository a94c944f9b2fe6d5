"""A loopback fake of Kolide's device API (``GET /devices``), for end-to-end tests and benchmarks.

Written from kolide/device-trust-mcp-server's OpenAPI documents (2023-05-26 and 2026-04-07): ``Authorization:
Bearer <key>``, ``per_page`` 1..100 (default 25; anything else is a 400), opaque ``cursor`` paging answered as
``{"data": [...], "pagination": {"next", "current_cursor", "next_cursor", "count"}}`` with ``next``/``next_cursor``
blank on the last page, 401 ``{"error"}`` for a wrong key and 403 ``{"error", "message"}`` when told the key may
not read devices. The real API documents no rate limit; when one is set here (``rate_limit_per_minute``) its 429
carries ``Retry-After`` (an assumption, as in the client). An unknown ``X-Kolide-Api-Version`` is a 400.

Fault injection, request log and caching come from ``tests.fakes.vendors._FakeVendor`` (``fail_next``,
``stall_next``, ``set_agents``, ``calls``).
"""

from __future__ import annotations

import binascii
import json
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

from tests.fakes.vendors import BASE_TIME, UNSET, Answer, Json, _b64, _FakeVendor, _stamp, _unb64, default_serial

KOLIDE_KEY = "k2sk_v1_test_kolide_api_key"
KOLIDE_DEVICES = "/devices"
API_VERSIONS = ("2023-05-26", "2026-04-07")
PER_PAGE_MAX = 100


def kolide_device(i: int, serial: str | None = UNSET, **overrides: Any) -> Json:
    """A realistic Kolide device (the OpenAPI ``device`` schema); ``overrides`` replace fields."""
    seen = BASE_TIME - timedelta(seconds=i % 3600)
    device: Json = {
        "id": str(48000 + i),
        "name": f"kolide-host-{i}",
        "registered_at": "2026-01-12T10:00:00Z",
        "last_authenticated_at": _stamp(seen - timedelta(hours=1)),
        "last_seen_at": _stamp(seen),
        "registered_owner_info": {"identifier": str(900 + i), "location": f"https://api.kolide.com/people/{900 + i}"},
        "operating_system": "macOS 15.6.1",
        "hardware_model": "MacBookPro18,3",
        "serial": default_serial(i) if serial is UNSET else serial,
        "hardware_uuid": f"5C0A6F1E-0000-4000-8000-{i:012X}",
        "note": "",
        "auth_state": "Good",
        "will_block_at": None,
        "product_image_url": "https://assets.kolide.com/devices/mbp.png",
        "auth_configuration": {
            "device_id": str(48000 + i),
            "authentication_mode": "only_registered_owner",
            "person_groups": [],
        },
        "device_type": "Mac",
        "form_factor": "Computer",
    }
    device.update(overrides)
    return device


class FakeKolide(_FakeVendor):
    """A local Kolide API serving ``GET /devices``; use as a context manager, give ``url`` as base URL."""

    name = "fake-kolide"

    def __init__(
        self,
        agents: Iterable[Json] = (),
        *,
        api_key: str = KOLIDE_KEY,
        forbidden: bool = False,
        rate_limit_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``forbidden``: the key is valid but may not read devices (403, as a key without that permission)."""
        super().__init__(
            agents,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_window=rate_limit_window,
            send_retry_after=send_retry_after,
            clock=clock,
        )
        self.api_key = api_key
        self.forbidden = forbidden
        self.versions_seen: list[str | None] = []

    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer:
        version = handler.headers.get("X-Kolide-Api-Version")
        with self._lock:
            self.versions_seen.append(version)
        if version is not None and version not in API_VERSIONS:
            return 400, json.dumps({"error": f"Unknown API version {version}"}).encode(), {}
        return super()._handle(handler)

    def _authorized(self, header: str | None) -> bool:
        return header == f"Bearer {self.api_key}"

    def _error_body(self, status: int, message: str) -> bytes:
        if status == 401:
            return json.dumps({"error": "Unauthorized"}).encode()
        if status == 403:
            return json.dumps({"error": "Forbidden", "message": message}).encode()
        return json.dumps({"error": message}).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") != KOLIDE_DEVICES:
            return 404, self._error_body(404, "Not Found"), {}
        if self.forbidden:
            return 403, self._error_body(403, "The API key used is not authorized to perform this action"), {}
        per_page_text = params.get("per_page", "25")
        if not per_page_text.isdigit() or not 1 <= int(per_page_text) <= PER_PAGE_MAX:
            return 400, self._error_body(400, f"per_page must be between 1 and {PER_PAGE_MAX}"), {}
        per_page = int(per_page_text)
        cursor = params.get("cursor", "")
        offset = 0
        if cursor:
            try:
                kind, _, number = _unb64(cursor).partition(",")
                offset = int(number)
                if kind != "k" or offset < 0:
                    raise ValueError(kind)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return 400, self._error_body(400, "Invalid cursor"), {}
        with self._lock:
            agents, generation = self._agents, self._generation
        total = len(agents)
        page = self._page(("k", generation, offset, per_page), lambda: agents[offset : offset + per_page])
        count = max(0, min(per_page, total - offset))
        next_cursor = _b64(f"k,{offset + per_page}") if offset + per_page < total else ""
        next_url = f"{self.url}{KOLIDE_DEVICES}?{urlencode({'per_page': per_page, 'cursor': next_cursor})}"
        pagination = {
            "next": next_url if next_cursor else "",
            "next_cursor": next_cursor,
            "current_cursor": cursor,
            "count": count,
        }
        return 200, b'{"data":' + page + b',"pagination":' + json.dumps(pagination).encode() + b"}", {}
