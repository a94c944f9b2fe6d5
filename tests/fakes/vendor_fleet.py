"""A loopback fake of Fleet's host API (``GET /api/v1/fleet/hosts``), for end-to-end tests and benchmarks.

Written from fleetdm/fleet ``docs/REST API/rest-api.md``: ``Authorization: Bearer <API token>``; 0-based ``page``
and ``per_page`` (no token, no total: a short page is the last), ``order_key`` (``id`` or ``hostname`` here),
``team_id`` filter, and each host's ``policies`` only with ``populate_policies=true``. Errors answer Fleet's
``{"message", "errors": [{"name", "reason"}], "uuid"}``; a wrong token is a 401 "Authentication required".
Fleet documents a rate limit only for login; when one is set here (``rate_limit_per_minute``) its 429 carries
``retry-after: N`` seconds, as Fleet's login limit does.

Fault injection, request log and caching come from ``tests.fakes.vendors._FakeVendor`` (``fail_next``,
``stall_next``, ``set_agents``, ``calls``). The hosts of a team in an order are filtered and sorted once per host
set (``set_agents`` drops them), not once per page.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from tests.fakes.vendors import BASE_TIME, UNSET, Answer, Json, _FakeVendor, _stamp, default_serial

FLEET_TOKEN = "fleet-test-api-only-token"
FLEET_HOSTS = "/api/v1/fleet/hosts"

DISK_POLICY = {
    "id": 7,
    "name": "FileVault on",
    "query": "SELECT 1 FROM filevault_status WHERE status = 'FileVault is On.';",
    "description": "Tailscale: fleetPolicy:diskEncrypted",
    "resolution": "Turn on FileVault in System Settings",
    "platform": "darwin",
    "critical": True,
}
SCREEN_LOCK_POLICY = {
    "id": 9,
    "name": "Screen lock",
    "query": "SELECT 1 FROM screenlock WHERE enabled = 1;",
    "description": "",
    "resolution": "",
    "platform": "",
    "critical": False,
}


def fleet_policy(base: Json, response: str, **overrides: Any) -> Json:
    """A policy result of a host: ``base`` (e.g. ``DISK_POLICY``) with ``response`` "pass", "fail" or ""."""
    return {**base, "response": response, **overrides}


def fleet_host(i: int, serial: str | None = UNSET, **overrides: Any) -> Json:
    """A realistic Fleet host (List hosts' fields) passing the disk policy; ``overrides`` replace fields."""
    seen = BASE_TIME - timedelta(seconds=i % 3600)
    host: Json = {
        "created_at": "2026-01-05T05:09:44Z",
        "updated_at": _stamp(seen),
        "id": 100 + i,
        "detail_updated_at": _stamp(seen - timedelta(minutes=20)),
        "policy_updated_at": _stamp(seen - timedelta(minutes=40)),
        "seen_time": _stamp(seen),
        "hostname": f"fleet-host-{i}.local",
        "display_name": f"fleet-host-{i}",
        "computer_name": f"fleet-host-{i}",
        "uuid": str(uuid.UUID(int=i)),
        "platform": "darwin",
        "osquery_version": "5.14.1",
        "os_version": "macOS 15.6.1",
        "hardware_vendor": "Apple Inc.",
        "hardware_model": "MacBookPro18,3",
        "hardware_serial": default_serial(i) if serial is UNSET else serial,
        "primary_ip": f"10.0.{i // 250 % 250}.{i % 250 + 1}",
        "primary_mac": f"a4:83:e7:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
        "status": "online",
        "display_text": f"fleet-host-{i}",
        "team_id": None,
        "team_name": None,
        "issues": {"failing_policies_count": 0, "total_issues_count": 0},
        "mdm": {"enrollment_status": "On (manual)", "name": "Fleet"},
        "policies": [fleet_policy(DISK_POLICY, "pass"), fleet_policy(SCREEN_LOCK_POLICY, "")],
    }
    host.update(overrides)
    return host


class FakeFleet(_FakeVendor):
    """A local Fleet server serving ``GET /api/v1/fleet/hosts``; give ``url`` as the Fleet URL."""

    name = "fake-fleet"

    def __init__(
        self,
        agents: Iterable[Json] = (),
        *,
        api_token: str = FLEET_TOKEN,
        rate_limit_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            agents,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_window=rate_limit_window,
            send_retry_after=send_retry_after,
            clock=clock,
        )
        self.api_token = api_token
        self._sorted: dict[tuple[str | None, str], list[Json]] = {}

    def _reindex(self) -> None:
        self._sorted.clear()

    def _rows(self, team: str | None, order_key: str) -> list[Json]:
        """The hosts of ``team`` (all if ``None``) in ``order_key`` order, filtered and sorted once per host set
        (``set_agents`` drops them through ``_reindex``); called with the lock held."""
        rows = self._sorted.get((team, order_key))
        if rows is None:
            rows = [a for a in self._agents if team is None or str(a.get("team_id")) == team]
            rows.sort(key=lambda a: (a.get(order_key) is None, a.get(order_key)))
            self._sorted[(team, order_key)] = rows
        return rows

    def _authorized(self, header: str | None) -> bool:
        return header == f"Bearer {self.api_token}"

    def _error_body(self, status: int, message: str) -> bytes:
        reason = "Authentication required" if status == 401 else message
        body = {
            "message": reason,
            "errors": [{"name": "base", "reason": reason}],
            "uuid": str(uuid.uuid4()),
        }
        return json.dumps(body).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") != FLEET_HOSTS:
            return 404, self._error_body(404, "Resource Not Found"), {}
        page_text, per_page_text = params.get("page", "0"), params.get("per_page", "1000000")
        if not page_text.isdigit() or not per_page_text.isdigit() or int(per_page_text) < 1:
            return 422, self._error_body(422, "page and per_page must be non-negative integers"), {}
        page, per_page = int(page_text), int(per_page_text)
        order_key = params.get("order_key", "id")
        if order_key not in ("id", "hostname"):
            return 422, self._error_body(422, f"invalid order_key {order_key}"), {}
        team = params.get("team_id")
        if team is not None and not team.isdigit():
            return 422, self._error_body(422, "team_id must be an integer"), {}
        populate = params.get("populate_policies") == "true"
        with self._lock:
            generation, rows = self._generation, self._rows(team, order_key)

        def build() -> list[Json]:
            window = rows[page * per_page : (page + 1) * per_page]
            return window if populate else [{k: v for k, v in a.items() if k != "policies"} for a in window]

        body = self._page(("f", generation, team, order_key, populate, page, per_page), build)
        return 200, b'{"hosts":' + body + b"}", {}
