"""Loopback fakes of the Huntress and SentinelOne agent APIs, for end-to-end tests and benchmarks.

Each fake is a real HTTP server on 127.0.0.1 (port 0, a daemon thread) that the real clients talk to:

- ``FakeHuntress`` serves ``GET /v1/agents`` (HTTP Basic ``api_key:api_secret``, ``limit`` 1..page_limit_max,
  opaque ``page_token`` paging, ``organization_id`` filter) and enforces the documented sliding-window rate
  limit (60 requests a minute → 429, with ``Retry-After`` unless told not to send one).
- ``FakeSentinelOne`` serves ``GET /web/api/v2.1/agents`` (``Authorization: ApiToken``, ``limit`` 1..1000,
  ``cursor`` paging, ``isDecommissioned`` filter, ``totalItems``) and answers errors in SentinelOne's
  ``{"errors": [{"code", "detail", "title"}]}`` shape.

Both count requests (``requests``, ``calls``), fail on demand (``fail_next``, ``stall_next``) and can swap
their agents (``set_agents``). Pages are serialized on first request and cached, so 50,000 agents cost one
``json.dumps`` per page. The Huntress error body (``{"error": ...}``) is a guess; its API does not document one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.loopback import LoopbackServer, QuietHandler, send_json

HUNTRESS_KEY = "hk_test_public_key"
HUNTRESS_SECRET = "hs_test_private_secret"
SENTINELONE_TOKEN = "s1-test-api-token"
HUNTRESS_AGENTS = "/v1/agents"
SENTINELONE_AGENTS = "/web/api/v2.1/agents"
BASE_TIME = datetime(2026, 11, 21, 11, 0, 0, tzinfo=UTC)

Json = dict[str, Any]
Answer = tuple[int, bytes, dict[str, str]]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def default_serial(i: int) -> str:
    """The serial number ``huntress_agent(i)`` and ``sentinelone_agent(i)`` report unless told otherwise."""
    return f"SER{i:07d}"


def _stamp(when: datetime, micro: bool = False) -> str:
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{when.microsecond:06d}Z" if micro else f"{text}Z"


@functools.cache
def _huntress_stamps(second: int) -> tuple[str, str, str]:
    """(last_callback_at, last_survey_at, updated_at) of an agent last seen ``second`` s before BASE_TIME."""
    seen = BASE_TIME - timedelta(seconds=second)
    return _stamp(seen), _stamp(seen - timedelta(minutes=30)), _stamp(seen - timedelta(minutes=5))


@functools.cache
def _sentinelone_stamps(second: int) -> tuple[str, str]:
    """(lastActiveDate, updatedAt) of an agent last active ``second`` s before BASE_TIME."""
    seen = BASE_TIME - timedelta(seconds=second, microseconds=624510)
    return _stamp(seen, micro=True), _stamp(seen + timedelta(hours=1), micro=True)


def huntress_agent(i: int, serial: str | None = UNSET, **overrides: Any) -> Json:
    """A realistic Huntress agent (fields of the published ``Agent`` definition); ``overrides`` replace fields."""
    callback, survey, updated = _huntress_stamps(i % 3600)
    agent: Json = {
        "id": i + 1,
        "account_id": 5,
        "arch": "x86_64",
        "created_at": "2026-05-05T11:00:00Z",
        "domain_name": "WORKGROUP",
        "edr_version": "0.13.58",
        "external_ip": "198.51.100.42",
        "hostname": f"host-{i:05d}",
        "defender_policy_status": "Compliant",
        "defender_status": "Protected",
        "defender_substatus": "Up to date",
        "firewall_status": "Enabled",
        "tamper_protection_configured": True,
        "tamper_protection_actual": True,
        "ipv4_address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "last_callback_at": callback,
        "last_survey_at": survey,
        "mac_addresses": [f"7c:a7:b0:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"],
        "service_pack_major": 0,
        "service_pack_minor": 0,
        "organization_id": 7,
        "os": "Windows 11 Pro",
        "os_build_version": "22631",
        "os_major": 10,
        "os_minor": 0,
        "os_patch": 0,
        "platform": "windows",
        "serial_number": default_serial(i) if serial is UNSET else serial,
        "tags": ["Workstation"],
        "updated_at": updated,
        "version": "0.13.58",
        "version_number": 720899,
        "win_build_number": 22631,
    }
    agent.update(overrides)
    return agent


def sentinelone_agent(i: int, serial: str | None = UNSET, **overrides: Any) -> Json:
    """A realistic SentinelOne agent (fields of the console's agent list); ``overrides`` replace fields."""
    active, updated = _sentinelone_stamps(i % 3600)
    agent: Json = {
        "accountId": "1286405255240245908",
        "activeThreats": 0,
        "agentVersion": "23.4.2.14",
        "computerName": f"host-{i:05d}",
        "encryptedApplications": True,
        "firewallEnabled": True,
        "id": str(1550901640146865256 + i),
        "infected": False,
        "isActive": True,
        "isDecommissioned": False,
        "isUpToDate": True,
        "lastActiveDate": active,
        "machineType": "laptop",
        "networkStatus": "connected",
        "operationalState": "na",
        "osType": "windows",
        "serialNumber": default_serial(i) if serial is UNSET else serial,
        "siteId": "1286405255257023125",
        "updatedAt": updated,
        "uuid": f"2e24b3bf-5769-e031-35af-{i:012x}",
    }
    agent.update(overrides)
    return agent


@dataclass(frozen=True)
class FakeRequest:
    """One request a fake received and how it answered."""

    path: str
    params: dict[str, str]
    status: int
    at: float


@dataclass
class _Failure:
    status: int
    times: int
    retry_after: float | None
    body: bytes | None
    stall: float


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(token: str) -> str:
    padded = token + "=" * (-len(token) % 4)
    return base64.urlsafe_b64decode(padded.encode()).decode()


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        send_json(self, *self.server.fake._handle(self))


class _FakeVendor(LoopbackServer):
    """Server lifecycle, request log, failure injection and rate limiting shared by both fakes."""

    name = "fake-vendor"

    def __init__(
        self,
        agents: Iterable[Json],
        *,
        rate_limit_per_minute: int | None,
        rate_limit_window: float = 60.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rate_limit_window = rate_limit_window
        self.send_retry_after = send_retry_after
        self.clock = clock
        self._lock = threading.Lock()
        self._agents: list[Json] = list(agents)
        self._pages: dict[tuple[Any, ...], bytes] = {}
        self._generation = 0
        self._calls: list[FakeRequest] = []
        self._arrivals = 0
        self._failures: deque[_Failure] = deque()
        self._window: deque[float] = deque()
        self.rate_limited = 0

    handler_class = _Handler

    # -- state and assertions ----------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """How many requests arrived (any path, any outcome; a stalled one counts at once)."""
        with self._lock:
            return self._arrivals

    @property
    def calls(self) -> list[FakeRequest]:
        """Every answered request, in the order answered."""
        with self._lock:
            return list(self._calls)

    @property
    def agents(self) -> list[Json]:
        """The agents served (a copy of the list)."""
        with self._lock:
            return list(self._agents)

    def set_agents(self, agents: Iterable[Json]) -> None:
        """Serve ``agents`` from now on (cached pages are dropped)."""
        with self._lock:
            self._agents = list(agents)
            self._generation += 1
            self._pages.clear()
            self._reindex()

    def reset(self) -> None:
        """Forget requests, pending failures and the rate-limit window."""
        with self._lock:
            self._calls.clear()
            self._arrivals = 0
            self._failures.clear()
            self._window.clear()
            self.rate_limited = 0

    def fail_next(
        self, status: int, times: int = 1, retry_after: float | None = None, body: bytes | str | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After`` if given) before anything else.

        ``body`` replaces the vendor-shaped error body (e.g. ``"not json"`` with status 200 for a malformed page).
        """
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._failures.append(_Failure(status, times, retry_after, raw, 0.0))

    def stall_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` requests for ``seconds`` (real time) before answering them normally."""
        with self._lock:
            self._failures.append(_Failure(0, times, None, None, seconds))

    # -- request handling ------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer:
        split = urlsplit(handler.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        with self._lock:
            self._arrivals += 1
        failure = self._take_failure()
        if failure is not None and failure.stall:
            time.sleep(failure.stall)
            failure = None
        if failure is not None:
            headers = {} if failure.retry_after is None else {"Retry-After": _retry_after_text(failure.retry_after)}
            body = failure.body if failure.body is not None else self._error_body(failure.status, "injected failure")
            answer: Answer = (failure.status, body, headers)
        elif not self._authorized(handler.headers.get("Authorization")):
            answer = (401, self._error_body(401, "Authentication Failed"), {})
        elif (wait := self._rate_limit()) is not None:
            headers = {"Retry-After": _retry_after_text(math.ceil(wait))} if self.send_retry_after else {}
            answer = (429, self._error_body(429, "Too Many Requests"), headers)
        else:
            answer = self._serve(split.path, params)
        with self._lock:
            self._calls.append(FakeRequest(split.path, params, answer[0], self.clock()))
        return answer

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self._failures.popleft()
            return failure

    def _rate_limit(self) -> float | None:
        """``None`` if this request is admitted (and counted), else seconds until it would be."""
        if not self.rate_limit_per_minute:
            return None
        with self._lock:
            now = self.clock()
            while self._window and now - self._window[0] >= self.rate_limit_window:
                self._window.popleft()
            if len(self._window) >= self.rate_limit_per_minute:
                self.rate_limited += 1
                return self._window[0] + self.rate_limit_window - now
            self._window.append(now)
            return None

    def _page(self, key: tuple[Any, ...], build: Callable[[], list[Json]]) -> bytes:
        """The JSON array of one page, serialized once."""
        with self._lock:
            cached = self._pages.get(key)
        if cached is None:
            cached = json.dumps(build(), separators=(",", ":")).encode()
            with self._lock:
                self._pages[key] = cached
        return cached

    # -- vendor specifics (overridden) -----------------------------------------------------------------------

    def _reindex(self) -> None:
        """Rebuild filter indexes after the agents changed (called with the lock held)."""

    def _authorized(self, header: str | None) -> bool:
        raise NotImplementedError

    def _error_body(self, status: int, message: str) -> bytes:
        raise NotImplementedError

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        raise NotImplementedError


def _retry_after_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


class FakeHuntress(_FakeVendor):
    """A local Huntress API serving ``GET /v1/agents``; use as a context manager, give ``url`` as base URL.

    ``rate_limit_per_minute=None`` disables the limit; ``rate_limit_window`` and ``clock`` (monotonic seconds)
    let tests run it on simulated time. ``send_retry_after=False`` makes 429s come without ``Retry-After``.
    """

    name = "fake-huntress"

    def __init__(
        self,
        agents: Iterable[Json] = (),
        *,
        api_key: str = HUNTRESS_KEY,
        api_secret: str = HUNTRESS_SECRET,
        page_limit_max: int = 500,
        rate_limit_per_minute: int | None = 60,
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
        self.api_key = api_key
        self.api_secret = api_secret
        self.page_limit_max = page_limit_max
        self._by_org: dict[str, list[int]] | None = None

    def _reindex(self) -> None:
        self._by_org = None

    def _org_rows(self, organization_id: str | None) -> list[int] | None:
        """Indexes of the agents of one organization (``None``: no filter); called with the lock held."""
        if organization_id is None:
            return None
        if self._by_org is None:
            by_org: dict[str, list[int]] = {}
            for n, agent in enumerate(self._agents):
                by_org.setdefault(str(agent.get("organization_id")), []).append(n)
            self._by_org = by_org
        return self._by_org.get(organization_id, [])

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[len("Basic ") :].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.api_key}:{self.api_secret}"

    def _error_body(self, status: int, message: str) -> bytes:
        return json.dumps({"status": status, "error": message}).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") != HUNTRESS_AGENTS:
            return 404, self._error_body(404, "Not Found"), {}
        limit_text = params.get("limit", "10")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= self.page_limit_max:
            return 400, self._error_body(400, f"limit must be between 1 and {self.page_limit_max}"), {}
        limit = int(limit_text)
        organization = params.get("organization_id")
        if organization is not None and not organization.isdigit():
            return 400, self._error_body(400, "organization_id is invalid"), {}
        offset = 0
        if params.get("page_token"):
            try:
                kind, _, number = _unb64(params["page_token"]).partition(":")
                offset = int(number)
                if kind != "h" or offset < 0:
                    raise ValueError(kind)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return 400, self._error_body(400, "page_token is invalid"), {}
        with self._lock:
            rows = self._org_rows(organization)
            total = len(self._agents) if rows is None else len(rows)
            agents, generation = self._agents, self._generation

        def build() -> list[Json]:
            window = range(offset, min(offset + limit, total))
            return [agents[n] for n in window] if rows is None else [agents[rows[n]] for n in window]

        page = self._page(("h", generation, organization, offset, limit), build)
        pagination: Json = {}
        if offset + limit < total:
            token = _b64(f"h:{offset + limit}")
            query = {k: v for k, v in params.items() if k != "page_token"} | {"page_token": token, "limit": limit}
            pagination = {"next_page_token": token, "next_page_url": f"{self.url}{HUNTRESS_AGENTS}?{urlencode(query)}"}
        body = b'{"agents":' + page + b',"pagination":' + json.dumps(pagination).encode() + b"}"
        return 200, body, {}


class FakeSentinelOne(_FakeVendor):
    """A local SentinelOne console serving ``GET /web/api/v2.1/agents``; give ``url`` as the console URL.

    No rate limit unless ``rate_limit_per_minute`` is set (429s then carry ``Retry-After``).
    """

    name = "fake-sentinelone"

    def __init__(
        self,
        agents: Iterable[Json] = (),
        *,
        api_token: str = SENTINELONE_TOKEN,
        page_limit_max: int = 1000,
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
        self.page_limit_max = page_limit_max
        self._by_decommissioned: dict[bool, list[int]] | None = None

    def _reindex(self) -> None:
        self._by_decommissioned = None

    def _rows(self, decommissioned: bool | None) -> list[int] | None:
        """Indexes of the (not) decommissioned agents (``None``: no filter); called with the lock held."""
        if decommissioned is None:
            return None
        if self._by_decommissioned is None:
            split: dict[bool, list[int]] = {True: [], False: []}
            for n, agent in enumerate(self._agents):
                split[bool(agent.get("isDecommissioned"))].append(n)
            self._by_decommissioned = split
        return self._by_decommissioned[decommissioned]

    def _authorized(self, header: str | None) -> bool:
        return header == f"ApiToken {self.api_token}"

    def _error_body(self, status: int, message: str) -> bytes:
        code = {400: 4000010, 401: 4010010, 403: 4030010, 404: 4040010, 429: 4290010}.get(status, status * 10000 + 10)
        detail = None if status == 401 else message
        return json.dumps({"errors": [{"code": code, "detail": detail, "title": message}]}).encode()

    def _serve(self, path: str, params: dict[str, str]) -> Answer:
        if path.rstrip("/") != SENTINELONE_AGENTS:
            return 404, self._error_body(404, "Resource not found"), {}
        limit_text = params.get("limit", "10")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= self.page_limit_max:
            return 400, self._error_body(400, f"limit must be between 1 and {self.page_limit_max}"), {}
        limit = int(limit_text)
        flag = params.get("isDecommissioned")
        if flag not in (None, "true", "false"):
            return 400, self._error_body(400, "isDecommissioned must be true or false"), {}
        decommissioned = None if flag is None else flag == "true"
        offset = 0
        if params.get("cursor"):
            try:
                kind, _, number = _unb64(params["cursor"]).partition(":")
                offset = int(number)
                if kind != "s1" or offset < 0:
                    raise ValueError(kind)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return 400, self._error_body(400, "cursor is invalid"), {}
        with self._lock:
            rows = self._rows(decommissioned)
            total = len(self._agents) if rows is None else len(rows)
            agents, generation = self._agents, self._generation

        def build() -> list[Json]:
            window = range(offset, min(offset + limit, total))
            return [agents[n] for n in window] if rows is None else [agents[rows[n]] for n in window]

        page = self._page(("s1", generation, decommissioned, offset, limit), build)
        cursor = _b64(f"s1:{offset + limit}") if offset + limit < total else None
        pagination = json.dumps({"nextCursor": cursor, "totalItems": total}).encode()
        return 200, b'{"data":' + page + b',"pagination":' + pagination + b"}", {}
