"""A loopback fake of JumpCloud's systems and System Insights APIs, for end-to-end tests and benchmarks.

Written from TheJumpCloud/jcapi-powershell's V1/V2 Swagger specs (see ``app/vendors/jumpcloud.py``):

- ``GET /api/systems``: header ``x-api-key`` (and ``x-org-id`` when the fake is multi-tenant), ``limit``
  1..100 (default 10; more is refused with 400), ``skip``, ``fields`` (space separated top-level fields:
  only those are returned, ``_id`` always), answer ``{"totalCount": N, "results": [...]}``.
- ``GET /api/v2/systeminsights/interface_details``: ``limit`` 0..10000 (default 10), ``skip``,
  ``filter=system_id:eq:<id>`` or ``system_id:in:<a>|<b>``; a bare JSON array of interface rows.

A wrong or missing key is a 401 ``{"message": "Unauthorized"}`` (JumpCloud's error bodies are not in the
specs; this one is an assumption). The rate limit is off unless ``rate_limit_per_minute`` is set; a 429
then carries ``Retry-After`` and ``X-RateLimit-Limit``/``X-RateLimit-Remaining`` (JumpCloud documents no
rate-limit headers: UNVERIFIED, so the client relies on ``Retry-After`` alone). Failure injection
(``fail_next``, ``stall_next``), request log and page caching come from ``tests.fakes.vendors``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.vendors import BASE_TIME, UNSET, Answer, Json, _FakeVendor, default_serial

JUMPCLOUD_KEY = "jc-test-api-key-0123456789abcdef"
SYSTEMS_PATH = "/api/systems"
INTERFACES_PATH = "/api/v2/systeminsights/interface_details"


def system_id(i: int) -> str:
    """The 24-hex ``_id`` of ``jumpcloud_system(i)``."""
    return f"65f0c1a2b3c4{i:012x}"


def jumpcloud_mac(i: int) -> str:
    """The hardware (universally administered) MAC of system ``i``'s first interface, as JumpCloud spells it."""
    return f"a4:83:e7:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def jumpcloud_system(i: int, serial: str | None = UNSET, **overrides: Any) -> Json:
    """A realistic ``JcSystem`` (fields of the V1 spec); ``overrides`` replace top-level fields."""
    seen = BASE_TIME - timedelta(seconds=i % 3600)
    system: Json = {
        "_id": system_id(i),
        "active": True,
        "agentVersion": "1.178.0",
        "allowMultiFactorAuthentication": False,
        "arch": "arm64",
        "created": "2026-03-12T10:00:00.000Z",
        "displayName": f"host-{i:05d}",
        "fde": {"active": True, "keyPresent": True},
        "hostname": f"host-{i:05d}.local",
        "lastContact": seen.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "mdm": {"vendor": "internal", "dep": True, "userApproved": True},
        "networkInterfaces": [
            {"address": f"10.0.{(i >> 8) & 255}.{i & 255}", "family": "IPv4", "internal": False, "name": "en0"}
        ],
        "organization": "5f1e2d3c4b5a697887a6b5c4",
        "os": "Mac OS X",
        "osFamily": "darwin",
        "policyStats": {"total": 6, "success": 6, "failed": 0, "pending": 0, "duplicate": 0, "unsupportedOs": 0},
        "serialNumber": default_serial(i) if serial is UNSET else serial,
        "systemInsights": {"state": "enabled"},
        "version": "15.6.1",
    }
    system.update(overrides)
    return system


def jumpcloud_interfaces(i: int, mac: str | None = None) -> list[Json]:
    """System Insights rows of system ``i``: its hardware NIC, a tunnel without a MAC, an AWDL interface."""
    sid = system_id(i)
    common = {"system_id": sid, "collisions": "0", "flags": 34915, "mtu": 1500, "type": 6}
    return [
        common | {"interface": "en0", "mac": mac if mac is not None else jumpcloud_mac(i), "physical_adapter": 1},
        common | {"interface": "utun0", "mac": "00:00:00:00:00:00", "type": 1},
        common | {"interface": "awdl0", "mac": f"36:c1:92:{(i >> 8) & 255:02x}:{i & 255:02x}:01"},
    ]


class FakeJumpCloud(_FakeVendor):
    """A local JumpCloud console API; use as a context manager and give ``url`` as the console URL."""

    name = "fake-jumpcloud"

    def __init__(
        self,
        systems: Iterable[Json] = (),
        interfaces: Iterable[Json] | None = None,
        *,
        api_key: str = JUMPCLOUD_KEY,
        org_id: str | None = None,
        rate_limit_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``interfaces`` default to ``jumpcloud_interfaces`` of nothing; ``org_id`` makes ``x-org-id`` required."""
        super().__init__(
            systems,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_window=rate_limit_window,
            send_retry_after=send_retry_after,
            clock=clock,
        )
        self.api_key = api_key
        self.org_id = org_id
        self._interfaces: list[Json] = list(interfaces or ())
        self._request = threading.local()

    def set_interfaces(self, rows: Iterable[Json]) -> None:
        """Serve these System Insights rows from now on."""
        with self._lock:
            self._interfaces = list(rows)
            self._generation += 1
            self._pages.clear()

    # -- vendor specifics ------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer:
        self._request.headers = handler.headers
        status, body, headers = super()._handle(handler)
        if status == 429 and self.rate_limit_per_minute:
            headers = headers | {"X-RateLimit-Limit": str(self.rate_limit_per_minute), "X-RateLimit-Remaining": "0"}
        return status, body, headers

    def _authorized(self, header: str | None) -> bool:
        headers: Mapping[str, str] = self._request.headers
        if headers.get("x-api-key") != self.api_key:
            return False
        return self.org_id is None or headers.get("x-org-id") == self.org_id

    def _error_body(self, status: int, message: str) -> bytes:
        text = "Unauthorized" if status == 401 else message
        return json.dumps({"message": text}).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") == SYSTEMS_PATH:
            return self._systems(params)
        if path.rstrip("/") == INTERFACES_PATH:
            return self._interface_rows(params)
        return 404, self._error_body(404, "Not Found"), {}

    def _systems(self, params: dict[str, str]) -> Answer:
        limit_text, skip_text = params.get("limit", "10"), params.get("skip", "0")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            return 400, self._error_body(400, "limit must be between 1 and 100"), {}
        if not skip_text.isdigit():
            return 400, self._error_body(400, "skip must be a non-negative integer"), {}
        limit, skip = int(limit_text), int(skip_text)
        fields = tuple(params.get("fields", "").split())
        with self._lock:
            systems, generation, total = self._agents, self._generation, len(self._agents)

        def build() -> list[Json]:
            window = systems[skip : skip + limit]
            if not fields:
                return window
            return [{k: v for k, v in s.items() if k == "_id" or k in fields} for s in window]

        page = self._page(("jc", generation, fields, skip, limit), build)
        return 200, b'{"totalCount":' + str(total).encode() + b',"results":' + page + b"}", {}

    def _interface_rows(self, params: dict[str, str]) -> Answer:
        limit_text, skip_text = params.get("limit", "10"), params.get("skip", "0")
        if not limit_text.isdigit() or not 0 <= int(limit_text) <= 10_000:
            return 400, self._error_body(400, "limit must be between 0 and 10000"), {}
        if not skip_text.isdigit():
            return 400, self._error_body(400, "skip must be a non-negative integer"), {}
        limit, skip = int(limit_text), int(skip_text)
        wanted: frozenset[str] | None = None
        if params.get("filter"):
            field, _, rest = params["filter"].partition(":")
            op, _, value = rest.partition(":")
            if field != "system_id" or op not in ("eq", "in"):
                return 400, self._error_body(400, "filter: valid fields are system_id and interface"), {}
            wanted = frozenset(value.split("|") if op == "in" else (value,))
        with self._lock:
            rows, generation = self._interfaces, self._generation

        def build() -> list[Json]:
            chosen = rows if wanted is None else [r for r in rows if r.get("system_id") in wanted]
            return chosen[skip : skip + limit]

        return 200, self._page(("jci", generation, wanted, skip, limit), build), {}
