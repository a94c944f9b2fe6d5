"""The Tailscale API over HTTP: bounded retries with backoff, typed errors, and credentials.

``RetryingSender`` sends one request with retries on 429, 5xx, timeouts and connection errors and maps
failures to the errors of ``app.tailnet.errors``. ``ApiKeyCredentials`` and ``OAuthCredentials`` supply the
``Authorization`` header; ``TailscaleClient`` joins the two and refreshes an OAuth token once on a 401.
Secrets stay ``SecretStr`` until a request is built and are never logged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from app.core import metrics
from app.core.clock import Clock, utcnow
from app.tailnet.errors import (
    AuthenticationError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    TailnetError,
    TailnetUnavailable,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]

OAUTH_ENDPOINT = "/api/v2/oauth/token"
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
DEFAULT_TOKEN_LIFETIME = 3600


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait: exponential backoff with full jitter, capped ``Retry-After``.

    ``budget`` bounds one call in all (attempts, their timeouts and the waits between them), so a down or
    hanging API cannot hold the caller (an approval in ``granting``) for much longer: each attempt's timeouts
    are cut to what is left, and a wait that would leave less than ``min_attempt`` seconds is not taken.
    """

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 30.0
    budget: float = 45.0
    min_attempt: float = 1.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Delay before retry number ``retry`` (0-based): uniform in [0, min(cap, base * 2**retry)]."""
        return rng.uniform(0.0, min(self.cap, self.base * 2**retry))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delta seconds or an HTTP-date); ``None`` if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def error_message(response: httpx.Response) -> str:
    """Tailscale's ``message`` from a JSON error body, else the status line (e.g. ``502 Bad Gateway``)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("message", "error_description", "error"):
            text = body.get(field)
            if isinstance(text, str) and text.strip():
                return text.strip()
    return f"{response.status_code} {response.reason_phrase}".strip()


def status_error(response: httpx.Response, not_found: type[TailnetError], note: str = "") -> TailnetError:
    """The typed error for a failed response that is not retried (or whose retries ran out)."""
    status, message = response.status_code, error_message(response) + note
    if status == 401:
        return AuthenticationError(message)
    if status == 403:
        return PermissionDenied(message)
    if status == 404:
        return not_found(message)
    if status == 429:
        return RateLimited(message)
    if status >= 500:
        return TailnetUnavailable(message)
    return InvalidRequest(message, status=status)


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _cut(timeout: float | None, left: float) -> float:
    return left if timeout is None else min(timeout, left)


class RetryingSender:
    """Send requests through an ``httpx.Client``, retrying transient failures within a ``RetryPolicy``."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self.monotonic = monotonic

    @metrics.count_api_errors(TailnetError, api="tailscale")
    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        not_found: type[TailnetError] = NotFound,
    ) -> httpx.Response:
        """Return the 2xx/3xx response, or raise the typed error once retries or the time budget are exhausted."""
        attempts = self.policy.max_attempts
        deadline = self.monotonic() + self.policy.budget
        for attempt in range(1, attempts + 1):
            try:
                response = self.client.request(
                    method, url, headers=headers, params=params, json=json, data=data, timeout=self._timeout(deadline)
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                delay = self.policy.backoff(attempt - 1, self.rng)
                if attempt == attempts or not self._fits(deadline, delay):
                    raise TailnetUnavailable(
                        f"Tailscale API did not answer {method} {url} after {attempt} attempts ({reason})"
                    ) from exc
                self._wait(method, url, reason, delay, attempt)
                continue
            except httpx.HTTPError as exc:
                raise TailnetUnavailable(f"Tailscale API request {method} {url} failed: {exc}") from exc
            if response.is_success or response.is_redirect:
                return response
            if not _retryable_status(response.status_code):
                raise status_error(response, not_found)
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            if retry_after is None:
                delay = self.policy.backoff(attempt - 1, self.rng)
            else:
                delay = min(retry_after, self.policy.retry_after_cap)
            if attempt == attempts or not self._fits(deadline, delay):
                raise status_error(response, not_found, f" (gave up after {attempt} attempts)")
            self._wait(method, url, f"HTTP {response.status_code}", delay, attempt)
        raise AssertionError("unreachable")

    def _fits(self, deadline: float, delay: float) -> bool:
        """Whether waiting ``delay`` still leaves ``min_attempt`` seconds of the budget for one more attempt."""
        return self.monotonic() + delay + self.policy.min_attempt <= deadline

    def _timeout(self, deadline: float) -> httpx.Timeout:
        """The client's timeouts, each cut to the time left in the budget."""
        left = max(deadline - self.monotonic(), self.policy.min_attempt)
        configured = self.client.timeout
        return httpx.Timeout(
            connect=_cut(configured.connect, left),
            read=_cut(configured.read, left),
            write=_cut(configured.write, left),
            pool=_cut(configured.pool, left),
        )

    def _wait(self, method: str, url: str, reason: str, delay: float, attempt: int) -> None:
        log.warning(
            "Tailscale API %s %s: %s; retrying in %.2fs (attempt %d of %d)",
            method,
            url,
            reason,
            delay,
            attempt,
            self.policy.max_attempts,
        )
        self.sleep(delay)


class Credentials(Protocol):
    """A source of the ``Authorization`` header value."""

    refreshable: bool

    def authorization(self) -> SecretStr:
        """The header value to send now."""
        ...

    def invalidate(self, used: SecretStr) -> None:
        """Forget ``used`` (it drew a 401) so the next ``authorization()`` fetches a fresh one."""
        ...


class ApiKeyCredentials:
    """A Tailscale API access token, sent as ``Bearer``."""

    refreshable = False

    def __init__(self, api_key: SecretStr) -> None:
        if not api_key.get_secret_value():
            raise ValueError("the Tailscale API key is empty")
        self._header = SecretStr(f"Bearer {api_key.get_secret_value()}")

    def authorization(self) -> SecretStr:
        """``Bearer <api key>``."""
        return self._header

    def invalidate(self, used: SecretStr) -> None:
        """An API key cannot be refreshed; nothing to do."""


class OAuthCredentials:
    """OAuth client credentials exchanged for an access token that is cached until 5 minutes before expiry."""

    refreshable = True

    def __init__(
        self, sender: RetryingSender, client_id: str, client_secret: SecretStr, *, clock: Clock = utcnow
    ) -> None:
        if not client_id or not client_secret.get_secret_value():
            raise ValueError("the Tailscale OAuth client id and secret must both be set")
        self.sender = sender
        self.client_id = client_id
        self._client_secret = client_secret
        self.clock = clock
        self._header: SecretStr | None = None
        self._refresh_at: datetime | None = None
        self._lock = threading.Lock()

    def authorization(self) -> SecretStr:
        """``Bearer <access token>``, fetching a new one when there is none or < 5 minutes are left."""
        with self._lock:
            if self._header is None or self._refresh_at is None or self._refresh_at < self.clock():
                self._header, self._refresh_at = self._fetch()
            return self._header

    def invalidate(self, used: SecretStr) -> None:
        """Drop the cached token if it is still the one that was refused."""
        with self._lock:
            if self._header is used:
                self._header = None
                self._refresh_at = None

    def _fetch(self) -> tuple[SecretStr, datetime]:
        try:
            response = self.sender.send(
                "POST",
                OAUTH_ENDPOINT,
                data={"client_id": self.client_id, "client_secret": self._client_secret.get_secret_value()},
            )
        except (InvalidRequest, PermissionDenied) as exc:
            message = f"Tailscale refused the OAuth client credentials: {exc.message}"
            raise AuthenticationError(message) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError("the Tailscale OAuth token response has no access_token")
        lifetime = body.get("expires_in", DEFAULT_TOKEN_LIFETIME)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        margin = min(TOKEN_REFRESH_MARGIN, timedelta(seconds=lifetime / 2))
        log.info("fetched a Tailscale OAuth access token valid for %ds", int(lifetime))
        return SecretStr(f"Bearer {token}"), self.clock() + timedelta(seconds=lifetime) - margin


class TailscaleClient:
    """Authenticated requests to the Tailscale API; an OAuth token refused with 401 is refreshed once."""

    def __init__(self, sender: RetryingSender, credentials: Credentials) -> None:
        self.sender = sender
        self.credentials = credentials

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        not_found: type[TailnetError] = NotFound,
    ) -> httpx.Response:
        """Send ``method path`` with credentials; return the successful response or raise a typed error."""
        for refreshed in (False, True):
            header = self.credentials.authorization()
            try:
                return self.sender.send(
                    method,
                    path,
                    headers={"Authorization": header.get_secret_value()},
                    params=params,
                    json=json,
                    not_found=not_found,
                )
            except AuthenticationError:
                if refreshed or not self.credentials.refreshable:
                    raise
                log.info("Tailscale API refused the OAuth access token; fetching a new one")
                self.credentials.invalidate(header)
        raise AssertionError("unreachable")
