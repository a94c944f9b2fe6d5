"""A loopback fake of the CrowdStrike Falcon API: OAuth2 token, host scroll, host details and ZTA assessments.

Written from VENDORS-MORE §1 (falconpy/gofalcon endpoint tables):

- ``POST /oauth2/token`` (form ``client_id``, ``client_secret``, optional ``member_cid``) → **201**
  ``{"access_token","token_type":"bearer","expires_in":1799}`` plus ``X-Cs-Region``; wrong credentials → 403
  ``{"errors":[{"code":403,"message":"Failed to issue access token - Not Authorized"}]}``.
- ``GET /devices/queries/devices-scroll/v1?limit&offset`` → ``{"meta":{"pagination":{"offset","expires_at","total",
  "limit"}},"resources":[aid...],"errors":[]}``; the last page answers ``offset: ""``. An unknown offset → 400.
- ``GET /devices/entities/devices/v2?ids=..`` (≤100 ids) → ``resources`` of host objects; 404 with ``errors``
  when none of the ids is a host.
- ``POST /devices/entities/devices/v2`` with JSON ``{"ids": [..]}`` (PostDeviceDetailsV2, ≤5000 ids, falconpy's
  ``get_device_details``) → the same answers as the GET form; a body that is not such an object, no ids, or more
  than 5000 → 400.
- ``GET /zero-trust-assessment/entities/assessments/v1?ids=..`` (≤100 ids) → assessments of the ids that have one;
  404 with ``errors`` when none has one.
- Requests without a valid token → 401 ``{"errors":[{"code":401,"message":"access denied, invalid bearer token"}]}``.
- Rate limit (``rate_limit`` per ``rate_window``): 429 with ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining: 0`` and
  ``X-RateLimit-RetryAfter`` = Unix epoch seconds (no ``Retry-After``), as CrowdStrike answers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from tests.fakes.oauth_vendor import Answer, Json, OAuthFakeVendor, Query, dumps

CROWDSTRIKE_CLIENT_ID = "cs-test-client-id"
CROWDSTRIKE_SECRET = "cs-test-client-secret-xyz"
SCROLL = "/devices/queries/devices-scroll/v1"
HOSTS = "/devices/entities/devices/v2"
GET_IDS_MAX = 100
POST_IDS_MAX = 5000
ZTA = "/zero-trust-assessment/entities/assessments/v1"
CID = "c0ffee00c0ffee00c0ffee00c0ffee00"


def falcon_host(i: int, serial: str | None = "", **overrides: Any) -> Json:
    """A host as ``devices/entities/devices/v2`` returns it; ``serial`` defaults to ``SER{i:07d}``."""
    host: Json = {
        "device_id": f"{i:032x}",
        "cid": CID,
        "hostname": f"host-{i:05d}",
        "serial_number": f"SER{i:07d}" if serial == "" else serial,
        "mac_address": f"a4-83-e7-{(i >> 16) & 255:02x}-{(i >> 8) & 255:02x}-{i & 255:02x}",
        "connection_mac_address": f"3c-2c-30-{(i >> 16) & 255:02x}-{(i >> 8) & 255:02x}-{i & 255:02x}",
        "platform_name": "Windows",
        "os_version": "Windows 11",
        "last_seen": "2026-11-30T09:12:44Z",
        "status": "normal",
        "agent_version": "7.20.18503.0",
    }
    host.update(overrides)
    return host


def falcon_assessment(host: Json, overall: int | None = 87) -> Json:
    """The ZTA entity of ``host`` with ``assessment.overall`` = ``overall``."""
    return {
        "aid": host["device_id"],
        "cid": CID,
        "event_platform": "Win",
        "modified_time": "2026-11-30T09:12:44Z",
        "system_serial_number": host.get("serial_number") or "",
        "assessment": {"overall": overall, "os": 92, "sensor_config": 80, "version": "3.6.1"},
        "assessment_items": {
            "os_signals": [
                {
                    "signal_id": "fw_win",
                    "signal_name": "Firewall",
                    "group_name": "Firewall",
                    "criteria": "enabled",
                    "meets_criteria": "yes",
                }
            ],
            "sensor_signals": [],
        },
    }


class FakeCrowdStrike(OAuthFakeVendor):
    """A local Falcon API; ``set_hosts(hosts, scores)`` with ``scores`` aid → overall (missing: no assessment)."""

    name = "fake-crowdstrike"
    token_path = "/oauth2/token"

    def __init__(
        self,
        hosts: Iterable[Json] = (),
        scores: dict[str, int | None] | None = None,
        *,
        client_id: str = CROWDSTRIKE_CLIENT_ID,
        client_secret: str = CROWDSTRIKE_SECRET,
        token_ttl: float = 1799,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        region: str = "us-1",
    ) -> None:
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            token_ttl=token_ttl,
            rate_limit=rate_limit,
            rate_window=rate_window,
            clock=clock,
        )
        self.wall_clock = wall_clock
        self.region = region
        self._hosts: list[Json] = []
        self._by_id: dict[str, Json] = {}
        self._zta: dict[str, Json] = {}
        self._offsets: dict[str, int] = {}
        self._offset_serial = 0
        self.set_hosts(hosts, scores)

    def set_hosts(self, hosts: Iterable[Json], scores: dict[str, int | None] | None = None) -> None:
        """Serve ``hosts``; every host gets an assessment of 87 unless ``scores`` says otherwise for its aid
        (an aid absent from a given ``scores`` has no assessment)."""
        with self._lock:
            self._hosts = list(hosts)
            self._by_id = {h["device_id"]: h for h in self._hosts}
            if scores is None:
                self._zta = {h["device_id"]: falcon_assessment(h) for h in self._hosts}
            else:
                self._zta = {
                    aid: falcon_assessment(self._by_id[aid], overall)
                    for aid, overall in scores.items()
                    if aid in self._by_id
                }

    # -- vendor specifics ---------------------------------------------------------------------------------

    def _token_answer(self, token: str, ttl: float) -> Answer:
        body = {"access_token": token, "token_type": "bearer", "expires_in": int(ttl)}
        return 201, dumps(body), {"X-Cs-Region": self.region}

    def _token_refused(self) -> Answer:
        return 403, self._error_body(403, "Failed to issue access token - Not Authorized"), {}

    def _api_refused(self, *, expired: bool) -> Answer:
        return 401, self._error_body(401, "access denied, invalid bearer token"), {}

    def _rate_limited(self, wait: float) -> Answer:
        retry_at = math.ceil(self.wall_clock() + wait)
        headers = {
            "X-Ratelimit-Limit": str(self.rate_limit),
            "X-Ratelimit-Remaining": "0",
            "X-RateLimit-RetryAfter": str(retry_at),
        }
        return 429, self._error_body(429, "API rate limit exceeded."), headers

    def _error_body(self, status: int, message: str) -> bytes:
        return dumps(
            {
                "meta": {"query_time": 0.0, "trace_id": "t-fake"},
                "errors": [{"code": status, "message": message}],
                "resources": [],
            }
        )

    def _meta(self) -> Json:
        return {"query_time": 0.01, "powered_by": "fake", "trace_id": "t-fake"}

    def _serve_request(self, method: str, path: str, query: Query, body: bytes) -> Answer:
        if method == "POST" and path == HOSTS:
            return self._post_details(body)
        return self._serve(method, path, query)

    def _serve(self, method: str, path: str, query: Query) -> Answer:
        if method != "GET":
            return 405, self._error_body(405, "method not allowed"), {}
        params: dict[str, list[str]] = {}
        for key, value in query:
            params.setdefault(key, []).append(value)
        if path == SCROLL:
            return self._scroll(params)
        if path in (HOSTS, ZTA):
            return self._entities(path, params.get("ids", []), GET_IDS_MAX)
        return 404, self._error_body(404, "Not Found"), {}

    def _post_details(self, body: bytes) -> Answer:
        """PostDeviceDetailsV2: the GET form's answers for the ids of a JSON body, up to 5000 of them."""
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return 400, self._error_body(400, "request body is not valid JSON"), {}
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            return 400, self._error_body(400, "ids must be a list of strings"), {}
        return self._entities(HOSTS, ids or [], POST_IDS_MAX)

    def _entities(self, path: str, ids: list[str], most: int) -> Answer:
        """Hosts or assessments by id (indexed lookups); 404 with an error per id when none is known."""
        if not ids:
            return 400, self._error_body(400, "ids is required"), {}
        if len(ids) > most:
            return 400, self._error_body(400, f"too many ids: at most {most}"), {}
        with self._lock:
            table = self._by_id if path == HOSTS else self._zta
            found = [table[i] for i in ids if i in table]
            missing = [{"code": 404, "message": f"ID {i} not found"} for i in ids if i not in table]
        status = 404 if not found else 200
        return status, dumps({"meta": self._meta(), "errors": missing, "resources": found}), {}

    def _scroll(self, params: dict[str, list[str]]) -> Answer:
        try:
            limit = int(params.get("limit", ["100"])[-1])
        except ValueError:
            return 400, self._error_body(400, "limit must be an integer"), {}
        if not 1 <= limit <= 10_000:
            return 400, self._error_body(400, "limit must be between 1 and 10000"), {}
        offset = params.get("offset", [""])[-1]
        with self._lock:
            if offset:
                start = self._offsets.get(offset)
                if start is None:
                    return 400, self._error_body(400, "invalid offset"), {}
            else:
                start = 0
            ids = [h["device_id"] for h in self._hosts[start : start + limit]]
            end = start + len(ids)
            next_offset = ""
            if end < len(self._hosts):
                self._offset_serial += 1
                next_offset = f"FQluY2x1ZGVf{self._offset_serial:06d}"
                self._offsets[next_offset] = end
            total = len(self._hosts)
        pagination = {
            "offset": next_offset,
            "expires_at": int(self.wall_clock() * 1000) + 120_000,
            "total": total,
            "limit": limit,
        }
        return 200, dumps({"meta": {**self._meta(), "pagination": pagination}, "resources": ids, "errors": []}), {}
