"""A loopback server base for vendor fakes that hand out OAuth2 client-credentials tokens.

``OAuthFakeVendor`` is a real HTTP server on 127.0.0.1 (port 0, daemon thread) with what every such vendor does
alike: a token endpoint (``POST``, form-encoded) that issues random bearer tokens living ``token_ttl`` seconds on
the fake's ``clock``; API requests carrying a missing, unknown or expired token refused with 401 in the vendor's
own error shape; a sliding-window rate limit answered with the vendor's own 429 headers; a request log;
``fail_next`` / ``stall_next`` fault injection (for the API, or with ``on="token"`` for the token endpoint);
``expire_tokens()`` to make every issued token expire now (the vendor revoking them early).

A subclass supplies the vendor specifics: ``token_path``, ``_client_ok``, ``_token_answer``, ``_token_refused``,
``_api_refused``, ``_rate_limited``, ``_error_body`` and ``_serve``. Used by the CrowdStrike and Intune fakes;
the Jamf Pro fake may use it too.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.loopback import LoopbackServer, QuietHandler, send_json

Json = dict[str, Any]
Answer = tuple[int, bytes, dict[str, str]]
Query = list[tuple[str, str]]


@dataclass(frozen=True)
class FakeCall:
    """One request the fake answered."""

    method: str
    path: str
    query: Query
    status: int
    token: str | None = None
    body: bytes = b""

    def params(self) -> dict[str, list[str]]:
        """Query parameters by name (repeated ones keep every value)."""
        out: dict[str, list[str]] = {}
        for key, value in self.query:
            out.setdefault(key, []).append(value)
        return out


@dataclass
class _Failure:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stall: float = 0.0


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        send_json(self, *self.server.fake._handle(method, self.path, body, dict(self.headers.items())))


class OAuthFakeVendor(LoopbackServer):
    """Lifecycle, tokens, rate limit, request log and fault injection; vendor specifics in subclasses."""

    name = "fake-oauth-vendor"
    token_path = "/oauth2/token"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_ttl: float,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._calls: list[FakeCall] = []
        self._arrivals = 0
        self._failures: dict[str, deque[_Failure]] = {"api": deque(), "token": deque()}
        self._window: deque[float] = deque()
        self.tokens_issued = 0
        self.rate_limited = 0

    handler_class = _Handler

    # -- state and control ----------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests that arrived (token endpoint included)."""
        with self._lock:
            return self._arrivals

    @property
    def calls(self) -> list[FakeCall]:
        with self._lock:
            return list(self._calls)

    def api_calls(self, path: str | None = None) -> list[FakeCall]:
        """Answered requests other than the token endpoint's (optionally only those to ``path``)."""
        return [c for c in self.calls if c.path != self.token_path and (path is None or c.path == path)]

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (as if revoked or its lifetime ran out)."""
        with self._lock:
            now = self.clock()
            self._tokens = dict.fromkeys(self._tokens, now)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._arrivals = 0
            for queue in self._failures.values():
                queue.clear()
            self._window.clear()
            self.rate_limited = 0

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
        on: str = "api",
    ) -> None:
        """Answer the next ``times`` API (or ``on="token"``) requests with ``status``, before anything else."""
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._failures[on].append(_Failure(status, times, dict(headers or {}), raw))

    def stall_next(self, seconds: float, times: int = 1, *, on: str = "api") -> None:
        """Hold the next ``times`` requests for ``seconds`` (real time), then answer them normally."""
        with self._lock:
            self._failures[on].append(_Failure(0, times, stall=seconds))

    # -- request handling ------------------------------------------------------------------------------------

    def _handle(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Answer:
        split = urlsplit(target)
        query = parse_qsl(split.query, keep_blank_values=True)
        with self._lock:
            self._arrivals += 1
        token: str | None = None
        is_token = split.path == self.token_path
        failure = self._take("token" if is_token else "api")
        if failure is not None and failure.stall:
            time.sleep(failure.stall)
            failure = None
        if failure is not None:
            payload = failure.body if failure.body is not None else self._error_body(failure.status, "injected failure")
            answer: Answer = (failure.status, payload, failure.headers)
        elif is_token:
            answer = self._token(method, body, headers)
        else:
            token = _bearer(headers)
            state = self._token_state(token)
            if state != "valid":
                answer = self._api_refused(expired=state == "expired")
            elif (wait := self._admit()) is not None:
                answer = self._rate_limited(wait)
            else:
                answer = self._serve_request(method, split.path, query, body)
        with self._lock:
            self._calls.append(FakeCall(method, split.path, query, answer[0], token, body))
        return answer

    def _take(self, on: str) -> _Failure | None:
        with self._lock:
            queue = self._failures[on]
            if not queue:
                return None
            failure = queue[0]
            failure.times -= 1
            if failure.times <= 0:
                queue.popleft()
            return failure

    def _token(self, method: str, body: bytes, headers: dict[str, str]) -> Answer:
        if method != "POST":
            return 405, self._error_body(405, "method not allowed"), {}
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        basic = _basic(headers)
        if basic is not None:
            form.setdefault("client_id", basic[0])
            form.setdefault("client_secret", basic[1])
        if form.get("grant_type") != "client_credentials":
            return 400, dumps({"error": "unsupported_grant_type"}), {}
        if not self._client_ok(form, headers):
            return self._token_refused()
        value = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[value] = self.clock() + self.token_ttl
            self.tokens_issued += 1
        return self._token_answer(value, self.token_ttl)

    def _token_state(self, token: str | None) -> str:
        with self._lock:
            expires = self._tokens.get(token or "")
            if expires is None:
                return "unknown"
            return "valid" if self.clock() < expires else "expired"

    def _admit(self) -> float | None:
        """``None`` if this API request is admitted (and counted), else seconds until it would be."""
        if not self.rate_limit:
            return None
        with self._lock:
            now = self.clock()
            while self._window and now - self._window[0] >= self.rate_window:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                self.rate_limited += 1
                return self._window[0] + self.rate_window - now
            self._window.append(now)
            return None

    # -- vendor specifics --------------------------------------------------------------------------------------

    def _client_ok(self, form: dict[str, str], headers: dict[str, str]) -> bool:
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def _token_answer(self, token: str, ttl: float) -> Answer:
        return 200, dumps({"access_token": token, "token_type": "bearer", "expires_in": int(ttl)}), {}

    def _token_refused(self) -> Answer:
        return 401, dumps({"error": "invalid_client"}), {}

    def _api_refused(self, *, expired: bool) -> Answer:
        raise NotImplementedError

    def _rate_limited(self, wait: float) -> Answer:
        raise NotImplementedError

    def _error_body(self, status: int, message: str) -> bytes:
        raise NotImplementedError

    def _serve(self, method: str, path: str, query: Query) -> Answer:
        raise NotImplementedError

    def _serve_request(self, method: str, path: str, query: Query, body: bytes) -> Answer:
        """An admitted API request; a vendor with body-carrying reads (POST lookups) overrides this."""
        return self._serve(method, path, query)


def _bearer(headers: dict[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


def _basic(headers: dict[str, str]) -> tuple[str, str] | None:
    for key, value in headers.items():
        if key.lower() == "authorization" and value.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(value[6:].strip()).decode().partition(":")
            except ValueError:
                return None
            return user, password
    return None
