"""A loopback fake of SimpleMDM's device list, for end-to-end tests and benchmarks.

Written from SimpleMDM's API reference (see ``app/vendors/simplemdm.py``): ``GET /api/v1/devices`` with HTTP
Basic (the API key as user name, empty password), ``limit`` 1..100 (default 10; more is refused with 400),
``starting_after=<device id>`` (devices with a greater id, in id order), ``include_awaiting_enrollment``
(default false), answer ``{"data": [{"type": "device", "id", "attributes", "relationships"}], "has_more"}``.
Errors are ``{"errors": [{"title": ...}]}``.

The rate limit is off unless ``rate_limit_per_minute`` is set (the ~60 a minute of a third-party README is
UNVERIFIED); a 429 then carries ``Retry-After`` and ``X-RateLimit-Limit``/``X-RateLimit-Remaining``, which
SimpleMDM does not document either. Failure injection (``fail_next``, ``stall_next``), request log and page
caching come from ``tests.fakes.vendors``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.vendors import BASE_TIME, UNSET, Answer, Json, _FakeVendor, default_serial

SIMPLEMDM_KEY = "smdm_test_key_8Zq2WmR4yT6u"
DEVICES_PATH = "/api/v1/devices"
AWAITING = "awaiting enrollment"


def simplemdm_mac(i: int) -> str:
    """The Wi-Fi MAC of ``simplemdm_device(i)``, as SimpleMDM spells it."""
    return f"f0:db:e2:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def simplemdm_device(i: int, serial: str | None = UNSET, **attributes: Any) -> Json:
    """A realistic enrolled Mac (fields of the reference's device); ``attributes`` replace device attributes."""
    seen = BASE_TIME - timedelta(seconds=i % 3600)
    values: Json = {
        "name": f"Mac {i:05d}",
        "last_seen_at": (seen - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S.000-08:00"),
        "last_seen_ip": "203.0.113.7",
        "enrolled_at": "2026-02-14T09:12:00.000-08:00",
        "status": "enrolled",
        "enrollment_channels": ["device"],
        "device_name": f"host-{i:05d}",
        "os_version": "15.6.1",
        "build_version": "24G90",
        "model_name": "MacBook Pro (14-inch, 2024)",
        "product_name": "Mac16,1",
        "unique_identifier": f"4A08359C-1D3A-5D3E-939E-{i:012X}",
        "serial_number": default_serial(i) if serial is UNSET else serial,
        "bluetooth_mac": f"f0:db:e2:00:00:{i & 255:02x}",
        "ethernet_macs": [],
        "wifi_mac": simplemdm_mac(i),
        "passcode_present": True,
        "passcode_compliant": True,
        "is_supervised": True,
        "is_dep_enrollment": True,
        "is_user_approved_enrollment": True,
        "filevault_enabled": True,
        "filevault_recovery_key": None,
        "firewall": {"enabled": True, "block_all_incoming": False, "stealth_mode": True},
        "system_integrity_protection_enabled": True,
    }
    values.update(attributes)
    return {
        "type": "device",
        "id": 100 + i,
        "attributes": values,
        "relationships": {"device_group": {"data": {"type": "device_group", "id": 1}}},
    }


class FakeSimpleMDM(_FakeVendor):
    """A local SimpleMDM API serving ``GET /api/v1/devices``; give ``url`` as the API URL."""

    name = "fake-simplemdm"

    def __init__(
        self,
        devices: Iterable[Json] = (),
        *,
        api_key: str = SIMPLEMDM_KEY,
        rate_limit_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            devices,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_window=rate_limit_window,
            send_retry_after=send_retry_after,
            clock=clock,
        )
        self.api_key = api_key
        self._sorted: dict[bool, tuple[list[int], list[Json]]] = {}

    def _reindex(self) -> None:
        self._sorted = {}

    def _listing(self, awaiting: bool) -> tuple[list[int], list[Json]]:
        """(ids, devices) in id order, with or without those awaiting enrollment; called with the lock held."""
        cached = self._sorted.get(awaiting)
        if cached is None:
            chosen = [d for d in self._agents if awaiting or d["attributes"].get("status") != AWAITING]
            chosen.sort(key=lambda d: int(d["id"]))
            cached = self._sorted[awaiting] = ([int(d["id"]) for d in chosen], chosen)
        return cached

    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer:
        status, body, headers = super()._handle(handler)
        if status == 429 and self.rate_limit_per_minute:
            headers = headers | {"X-RateLimit-Limit": str(self.rate_limit_per_minute), "X-RateLimit-Remaining": "0"}
        return status, body, headers

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[len("Basic ") :].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.api_key}:"

    def _error_body(self, status: int, message: str) -> bytes:
        text = "unauthorized" if status == 401 else message
        return json.dumps({"errors": [{"title": text}]}).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") != DEVICES_PATH:
            return 404, self._error_body(404, "object not found"), {}
        limit_text = params.get("limit", "10")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            return 400, self._error_body(400, "limit must be between 1 and 100"), {}
        after_text = params.get("starting_after")
        if after_text is not None and not after_text.isdigit():
            return 400, self._error_body(400, "starting_after must be an object id"), {}
        awaiting_text = params.get("include_awaiting_enrollment", "false")
        if awaiting_text not in ("true", "false"):
            return 400, self._error_body(400, "include_awaiting_enrollment must be true or false"), {}
        limit, awaiting = int(limit_text), awaiting_text == "true"
        with self._lock:
            ids, devices = self._listing(awaiting)
            generation = self._generation
        start = 0 if after_text is None else bisect.bisect_right(ids, int(after_text))
        more = start + limit < len(ids)
        page = self._page(("smdm", generation, awaiting, start, limit), lambda: devices[start : start + limit])
        return 200, b'{"data":' + page + b',"has_more":' + (b"true" if more else b"false") + b"}", {}
