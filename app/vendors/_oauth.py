"""OAuth2 client-credentials tokens for vendor clients: fetched once, cached, renewed before they run out.

Vendors that hand out short-lived bearer tokens (CrowdStrike: 30 min, Entra/Intune: 1 h, Jamf Pro API clients:
as set per client, often 10 min) all follow RFC 6749 §4.4: ``POST <token_url>`` with
``grant_type=client_credentials`` and the client's id and secret, answered by
``{"access_token", "token_type", "expires_in"}``. This module does that dance once for every client.

Interface (what a vendor client uses)::

    tokens = OAuthTokens(
        http_client,                      # the client's httpx.Client (tests: one under respx)
        label="CrowdStrike",              # names the vendor in errors and logs
        token_url="https://api.crowdstrike.com/oauth2/token",
        client_id=..., client_secret=...,
        form={"scope": "..."},            # extra form fields (Entra: scope; CrowdStrike: member_cid)
        basic_auth=False,                 # True: id/secret in HTTP Basic instead of the form (RFC 6749 §2.3.1)
        send_grant_type=True,             # False for a vendor that rejects grant_type (none known so far)
        policy=VENDOR_RETRY, sleep=..., rng=..., monotonic=..., wall_clock=...,   # as VendorHttp takes them
        refresh_margin=60.0,              # renew this many seconds before expiry (at most a quarter of the
    )                                     # lifetime, so a 2-minute token is renewed after 90 s)

    tokens.token() -> str                 # a valid access token, fetched or renewed as needed (thread-safe)
    tokens.headers() -> dict[str, str]    # {"Authorization": "Bearer <token>"}
    tokens.call(lambda headers: vendor_http.get_json(url, params=p, headers={**base, **headers}))
        # runs one request with the bearer header; when it raises VendorAuthError and the token came from the
        # cache (so it may have been revoked or expired early on the vendor's side), the token is dropped,
        # a new one fetched and the request run ONCE more; a second refusal, or a refusal of a token fetched
        # for this very call, propagates (the credentials or their scopes are wrong).
    tokens.invalidate() -> None           # forget the cached token (the next call fetches one)
    tokens.fetches -> int                 # tokens fetched so far (tests and logs)

Errors (``app.vendors.base``): 401/403 from the token endpoint, or 400 with an OAuth error code that blames the
client (``invalid_client``, ``unauthorized_client``, ``invalid_grant``, ``invalid_scope``; Entra answers a wrong
secret with 401 ``invalid_client`` and an unknown tenant with 400 ``invalid_request``, which is reported as a plain
``VendorError`` naming the cause) → ``VendorAuthError``; an answer without a usable ``access_token`` →
``VendorDataError``; 429/5xx/network failures after the policy's retries → ``VendorTransientError``. Status codes
2xx are all accepted (CrowdStrike answers **201**, others 200). ``expires_in`` may be a number or a string of
digits (Entra's v1 endpoint sent strings); without it the token is kept ``default_ttl`` seconds (5 min).

Secrets: the client secret and every access token are passed to ``redact`` before any text reaches an error
message or a log line; neither is ever logged, and ``repr(OAuthTokens)`` shows only the token URL and client id.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from app.core.clock import Clock, utcnow
from app.core.http import Monotonic, RetryingClient, RetryPolicy, Sleep, StopReason, Unanswered, describe_error
from app.core.http import status_line as _status_line
from app.vendors._http import VENDOR_RETRY, json_error_detail, redact
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TTL = 300.0
"""Seconds a token without ``expires_in`` is trusted."""
REFRESH_MARGIN = 60.0
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"})
"""OAuth ``error`` codes (RFC 6749 §5.2) that mean the credentials or their grants are wrong."""


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float  # monotonic seconds
    renew_at: float  # monotonic seconds


class OAuthTokens:
    """A client-credentials token cache for one vendor account (see the module docstring for the interface)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        label: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        form: Mapping[str, str] | None = None,
        basic_auth: bool = False,
        send_grant_type: bool = True,
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        monotonic: Monotonic = time.monotonic,
        wall_clock: Clock = utcnow,
        refresh_margin: float = REFRESH_MARGIN,
        default_ttl: float = DEFAULT_TTL,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError(f"{label} needs a client id and a client secret")
        if refresh_margin < 0 or default_ttl <= 0:
            raise ValueError("refresh_margin must be >= 0 and default_ttl > 0")
        self.label = label
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._form = dict(form or {})
        self._basic_auth = basic_auth
        self._send_grant_type = send_grant_type
        self.refresh_margin = refresh_margin
        self.default_ttl = default_ttl
        self.monotonic = monotonic
        self.fetches = 0
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self._http = RetryingClient(
            client,
            policy or VENDOR_RETRY,
            name=f"{label} token",
            sleep=sleep,
            monotonic=monotonic,
            clock=wall_clock,
            rng=rng,
            describe=self._describe,
            redact=self._redact,
        )

    def __repr__(self) -> str:
        return f"OAuthTokens(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        """A valid access token: the cached one unless it is due for renewal, else a newly fetched one."""
        return self._current()[0]

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header carrying a valid token."""
        return {"Authorization": f"Bearer {self.token()}"}

    def invalidate(self) -> None:
        """Forget the cached token; the next ``token()`` fetches a new one."""
        with self._lock:
            self._token = None

    def call(self, request: Callable[[dict[str, str]], T]) -> T:
        """``request(auth_headers)``, once more with a new token if a cached token was refused (module docstring)."""
        value, fresh = self._current()
        try:
            return request({"Authorization": f"Bearer {value}"})
        except VendorAuthError:
            if fresh:
                raise
            self._drop(value)
            log.info("%s refused a cached access token; fetching a new one and retrying once", self.label)
        value, _fresh = self._current()
        return request({"Authorization": f"Bearer {value}"})

    def _drop(self, value: str) -> None:
        """Forget ``value`` unless another thread already replaced it."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _current(self) -> tuple[str, bool]:
        """The token to use and whether it was fetched by this call."""
        with self._lock:
            token = self._token
            if token is not None and self.monotonic() < token.renew_at:
                return token.value, False
            self._token = token = self._fetch()
            return token.value, True

    def _fetch(self) -> _Token:
        form: dict[str, str] = {}
        if self._send_grant_type:
            form["grant_type"] = "client_credentials"
        headers = {"Accept": "application/json"}
        if self._basic_auth:
            pair = f"{self.client_id}:{self._secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret
        form.update(self._form)
        path = httpx.URL(self.token_url).path
        started = self.monotonic()
        try:
            sent = self._http.send("POST", self.token_url, data=form, headers=headers)
        except Unanswered as exc:
            raise VendorTransientError(
                f"{self.label} token endpoint {path} did not answer after {exc.attempts} attempts "
                f"({self._redact(describe_error(exc.error))})"
            ) from None
        except httpx.HTTPError as exc:
            raise VendorError(
                f"{self.label} token endpoint {path} failed: {self._redact(describe_error(exc))}"
            ) from None
        response = sent.response
        if not response.is_success:
            raise self._failure(response, path, sent.stopped, sent.note)
        token = self._parse(response, path, started)
        self.fetches += 1
        log.info(
            "%s: fetched an access token valid for %.0fs (renewed after %.0fs)",
            self.label,
            token.expires_at - started,
            token.renew_at - started,
        )
        return token

    def _parse(self, response: httpx.Response, path: str, started: float) -> _Token:
        try:
            body: Any = response.json()
        except ValueError:
            raise VendorDataError(f"{self.label} token endpoint {path} answered a body that is not JSON") from None
        if not isinstance(body, dict):
            raise VendorDataError(f"{self.label} token endpoint {path} answered something other than an object")
        value = body.get("access_token")
        if not isinstance(value, str) or not value.strip():
            raise VendorDataError(f"{self.label} token endpoint {path} answered without an access_token")
        token_type = body.get("token_type")
        if token_type is not None and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
            raise VendorDataError(f"{self.label} token endpoint {path} answered a token type other than bearer")
        ttl = self._lifetime(body.get("expires_in"), path)
        margin = min(self.refresh_margin, ttl / 4)
        return _Token(value=value, expires_at=started + ttl, renew_at=started + ttl - margin)

    def _lifetime(self, raw: Any, path: str) -> float:
        if raw is None:
            return self.default_ttl
        number: float | None = None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            number = float(raw)
        elif isinstance(raw, str) and raw.strip().isdigit():
            number = float(raw.strip())
        if number is None or number <= 0:
            raise VendorDataError(f"{self.label} token endpoint {path} answered expires_in {raw!r}, not seconds")
        return number

    def _failure(self, response: httpx.Response, path: str, stopped: StopReason | None, note: str) -> VendorError:
        text = self._describe(response)
        code = _oauth_error(response)
        if response.status_code in (401, 403) or code in CLIENT_ERRORS:
            return VendorAuthError(f"{self.label} refused the client credentials ({text}); check them")
        if stopped is not None or response.status_code >= 500 or response.status_code == 429:
            suffix = f" ({note})" if note else ""
            return VendorTransientError(f"{self.label} token endpoint {path}: {text}{suffix}")
        return VendorError(f"{self.label} token endpoint {path} failed: {text}")

    def _describe(self, response: httpx.Response) -> str:
        detail = json_error_detail(response)
        description = _oauth_field(response, "error_description")
        if description and description not in detail:
            detail = f"{detail}: {description}" if detail else description
        line = _status_line(response)
        return self._redact(f"{line}: {detail}" if detail else line)

    def _redact(self, text: str) -> str:
        current = self._token.value if self._token is not None else ""
        return redact(text, (self._secret, current))


def _oauth_error(response: httpx.Response) -> str:
    """The RFC 6749 ``error`` code of a JSON error body, else ``""``."""
    return _oauth_field(response, "error")


def _oauth_field(response: httpx.Response, name: str) -> str:
    """A string field of a JSON error body (first line, at most 200 characters), else ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get(name), str):
        text = str(body[name]).strip().splitlines()
        return text[0][:200] if text else ""
    return ""
