"""A loopback fake of a Jamf Pro server's OAuth token endpoint and computers inventory, for tests and benchmarks.

``FakeJamfPro`` serves, on 127.0.0.1:

- ``POST /api/oauth/token`` and ``POST /api/v1/oauth/token`` (form ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``) → ``{"access_token", "scope": "api-role:2", "token_type": "Bearer",
  "expires_in": 599}``; wrong credentials → 401 ``{"error": "invalid_client"}``. Tokens EXPIRE on the fake's
  ``clock`` after ``token_lifetime`` seconds; an expired or unknown token gets 401 ``{"httpStatus": 401,
  "errors": []}`` as the Jamf Pro API answers.
- ``GET /api/{version}/computers-inventory`` for the ``versions`` it is built with (default v1, v3, v4; others
  404): repeated ``section`` (GENERAL, HARDWARE, SECURITY, OPERATING_SYSTEM...; none → GENERAL only), 0-based
  ``page``, ``page-size`` 1..2000, ``sort=id:asc`` → ``{"totalCount": N, "results": [...]}`` where each computer
  carries ``id``, ``udid`` and only the requested sections (the others ``null``). v4 answers
  ``general.lastContact`` + ``general.lastCheckIn`` where v1/v3 answer ``general.lastContactTime``.

Jamf documents no rate limit; ``rate_limit_per_minute`` (off by default) answers 429 with ``Retry-After`` the
way a load balancer in front of Jamf Cloud would (unverified). ``fail_next``/``stall_next``, the request log
and ``set_agents`` come from ``tests.fakes.vendors``; ``expire_tokens()`` revokes every token issued so far.
Computers are given in the v3 shape (``jamf_computer``); the fake derives v4's from it.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tests.fakes.vendors import (
    BASE_TIME,
    UNSET,
    Answer,
    FakeRequest,
    Json,
    _FakeVendor,
    _Handler,
    _retry_after_text,
    default_serial,
)

JAMF_CLIENT_ID = "5b8f1a4e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
JAMF_CLIENT_SECRET = "jamf-test-client-secret-value"
TOKEN_PATHS = ("/api/oauth/token", "/api/v1/oauth/token")
SECTION_KEYS = {
    "GENERAL": "general",
    "HARDWARE": "hardware",
    "SECURITY": "security",
    "OPERATING_SYSTEM": "operatingSystem",
    "DISK_ENCRYPTION": "diskEncryption",
    "USER_AND_LOCATION": "userAndLocation",
}
MAX_PAGE_SIZE = 2000


def _stamp(seconds_ago: int) -> str:
    return (BASE_TIME - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def jamf_mac(i: int, alt: bool = False) -> str:
    """The (alternate) MAC ``jamf_computer(i)`` reports, colon-separated upper case as Jamf shows it."""
    prefix = "36:C1:92" if alt else "A4:83:E7"
    return f"{prefix}:{(i >> 16) & 255:02X}:{(i >> 8) & 255:02X}:{i & 255:02X}"


def jamf_computer(
    i: int,
    serial: str | None = UNSET,
    *,
    general: Json | None = None,
    hardware: Json | None = None,
    security: Json | None = None,
    operating_system: Json | None = None,
) -> Json:
    """A realistic v3 computers-inventory record (four sections); the keyword dicts update those sections."""
    record: Json = {
        "id": str(i + 1),
        "udid": f"A1B2C3D4-0000-4000-8000-{i:012X}",
        "general": {
            "name": f"host-{i:05d}",
            "platform": "Mac",
            "reportDate": _stamp(i % 3600 + 3600),
            "lastContactTime": _stamp(i % 3600),
            "lastEnrolledDate": "2026-05-05T11:00:00.000Z",
            "remoteManagement": {"managed": True, "managementUsername": "jamfadmin"},
            "supervised": True,
            "userApprovedMdm": True,
            "mdmCapable": {"capable": True, "capableUsers": []},
            "site": {"id": "-1", "name": "None"},
        },
        "hardware": {
            "make": "Apple",
            "model": "MacBook Pro (14-inch, 2024)",
            "serialNumber": default_serial(i) if serial is UNSET else serial,
            "macAddress": jamf_mac(i),
            "altMacAddress": jamf_mac(i, alt=True),
        },
        "security": {
            "sipStatus": "ENABLED",
            "gatekeeperStatus": "APP_STORE_AND_IDENTIFIED_DEVELOPERS",
            "firewallEnabled": True,
            "activationLockEnabled": False,
        },
        "operatingSystem": {
            "name": "macOS",
            "version": "15.6.1",
            "build": "24G90",
            "fileVault2Status": "ALL_ENCRYPTED",
        },
    }
    for key, update in (
        ("general", general),
        ("hardware", hardware),
        ("security", security),
        ("operatingSystem", operating_system),
    ):
        if update:
            record[key] = {**record[key], **update}
    return record


def as_v4(record: Json) -> Json:
    """The v4 shape of a v3 record: ``lastContactTime`` renamed ``lastContact``, ``lastCheckIn`` added."""
    general = record.get("general")
    if not isinstance(general, dict):
        return record
    changed = {k: v for k, v in general.items() if k != "lastContactTime"}
    changed["lastContact"] = general.get("lastContactTime")
    changed["lastCheckIn"] = general.get("lastContactTime")
    return {**record, "general": changed}


class _JamfHandler(_Handler):
    def do_POST(self) -> None:
        self.do_GET()


class FakeJamfPro(_FakeVendor):
    """A local Jamf Pro server; use as a context manager and give ``url`` as the server URL."""

    name = "fake-jamfpro"
    handler_class = _JamfHandler  # also takes POSTs (the token endpoint)

    def __init__(
        self,
        agents: Iterable[Json] = (),
        *,
        client_id: str = JAMF_CLIENT_ID,
        client_secret: str = JAMF_CLIENT_SECRET,
        token_lifetime: int = 599,
        versions: Iterable[str] = ("v1", "v3", "v4"),
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
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.versions = frozenset(versions)
        self._tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.expired_refusals = 0
        self._token_lock = threading.Lock()
        self._sorted: dict[str, list[Json]] = {}

    def _reindex(self) -> None:
        self._sorted.clear()

    def _ordered(self, sort: str) -> list[Json]:
        """The computers by numeric ``id`` (``id:desc``: descending), sorted once per agent set."""
        with self._lock:
            rows = self._sorted.get(sort)
            if rows is None:
                rows = sorted(self._agents, key=lambda a: int(a["id"]), reverse=sort == "id:desc")
                self._sorted[sort] = rows
            return rows

    def expire_tokens(self) -> None:
        """Revoke every token issued so far (the next API request with one gets 401)."""
        with self._token_lock:
            self._tokens.clear()

    # -- request handling ------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer:
        split = urlsplit(handler.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        form_text = handler.rfile.read(length).decode() if length else ""
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
        elif handler.command == "POST" and split.path in TOKEN_PATHS:
            answer = self._issue_token(form_text)
        elif handler.command != "GET":
            answer = (405, self._error_body(405, "Method Not Allowed"), {})
        elif not self._authorized(handler.headers.get("Authorization")):
            answer = (401, json.dumps({"httpStatus": 401, "errors": []}).encode(), {})
        elif (wait := self._rate_limit()) is not None:
            headers = {"Retry-After": _retry_after_text(max(1, int(wait + 0.999)))} if self.send_retry_after else {}
            answer = (429, self._error_body(429, "Too Many Requests"), headers)
        else:
            answer = self._inventory(split.path, split.query)
        with self._lock:
            self._calls.append(FakeRequest(split.path, params, answer[0], self.clock()))
        return answer

    def _issue_token(self, form_text: str) -> Answer:
        form = {k: v[-1] for k, v in parse_qs(form_text, keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, json.dumps({"error": "unsupported_grant_type"}).encode(), {}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, json.dumps({"error": "invalid_client"}).encode(), {}
        token = secrets.token_urlsafe(24)
        with self._token_lock:
            self._tokens[token] = self.clock() + self.token_lifetime
            self.tokens_issued += 1
        body = {"access_token": token, "scope": "api-role:2", "token_type": "Bearer", "expires_in": self.token_lifetime}
        return 200, json.dumps(body).encode(), {}

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        token = header[len("Bearer ") :].strip()
        with self._token_lock:
            expires = self._tokens.get(token)
            if expires is None:
                return False
            if self.clock() >= expires:
                self.expired_refusals += 1
                return False
        return True

    def _error_body(self, status: int, message: str) -> bytes:
        code = message.upper().replace(" ", "_")
        return json.dumps(
            {"httpStatus": status, "errors": [{"code": code, "description": message, "id": "0", "field": None}]}
        ).encode()

    def _inventory(self, path: str, query: str) -> Answer:
        parts = path.rstrip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["", "api"] or parts[3] != "computers-inventory":
            return 404, self._error_body(404, "Not Found"), {}
        version = parts[2]
        if version not in self.versions:
            return 404, self._error_body(404, "Not Found"), {}
        values = parse_qs(query, keep_blank_values=True)
        sections = values.get("section") or ["GENERAL"]
        unknown = [s for s in sections if s not in SECTION_KEYS]
        if unknown:
            return 400, self._error_body(400, f"Invalid section {unknown[0]}"), {}
        page_text = (values.get("page") or ["0"])[-1]
        size_text = (values.get("page-size") or ["100"])[-1]
        if not page_text.isdigit() or not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
            return 400, self._error_body(400, f"page-size must be between 1 and {MAX_PAGE_SIZE}"), {}
        page, size = int(page_text), int(size_text)
        sort = (values.get("sort") or ["id:asc"])[-1]
        if sort not in ("id:asc", "id:desc"):
            return 400, self._error_body(400, f"Invalid sort {sort}"), {}
        wanted = tuple(sorted({SECTION_KEYS[s] for s in sections}))
        with self._lock:
            generation = self._generation
        ordered = self._ordered(sort)
        total = len(ordered)

        def build() -> list[Json]:
            window = itertools.islice(ordered, page * size, page * size + size)
            out: list[Json] = []
            for record in window:
                shaped = as_v4(record) if version == "v4" else record
                item: Json = {"id": shaped["id"], "udid": shaped.get("udid")}
                for key in SECTION_KEYS.values():
                    item[key] = shaped.get(key) if key in wanted else None
                out.append(item)
            return out

        body = self._page(("j", generation, version, wanted, sort, page, size), build)
        return 200, b'{"totalCount":' + str(total).encode() + b',"results":' + body + b"}", {}
