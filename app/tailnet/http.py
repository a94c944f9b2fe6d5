"""The Tailscale API over HTTP: typed errors and credentials on top of the shared retrying client.

``RetryingSender`` sends one request through ``app.core.http.RetryingClient`` (retries, ``Retry-After``,
time budget) and maps failures to the errors of ``app.tailnet.errors``. ``ApiKeyCredentials`` and
``OAuthCredentials`` supply the ``Authorization`` header; ``TailscaleClient`` joins the two and refreshes an
OAuth token once on a 401. Secrets stay ``SecretStr`` until a request is built and are never logged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from pydantic import SecretStr

from app.core import metrics
from app.core.clock import Clock, utcnow
from app.core.http import Monotonic, RetryingClient, RetryPolicy, Sleep, Unanswered, describe_error
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

OAUTH_ENDPOINT = "/api/v2/oauth/token"
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
DEFAULT_TOKEN_LIFETIME = 3600


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


class RetryingSender:
    """Send Tailscale API requests through a ``RetryingClient``; failures become ``TailnetError`` subclasses.

    The policy defaults to ``RetryPolicy()``: at most 45 s per call, since an approval waits on it.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Clock = utcnow,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.http = RetryingClient(
            client, policy, name="Tailscale", sleep=sleep, monotonic=monotonic, clock=clock, rng=rng
        )

    @metrics.count_api_errors(TailnetError, api="tailscale")
    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: object = None,
        data: Mapping[str, str] | None = None,
        not_found: type[TailnetError] = NotFound,
    ) -> httpx.Response:
        """Return the 2xx/3xx response, or raise the typed error once retries or the time budget are exhausted."""
        try:
            sent = self.http.send(method, url, headers=headers, params=params, json=json, data=data)
        except Unanswered as exc:
            reason = describe_error(exc.error)
            raise TailnetUnavailable(
                f"Tailscale API did not answer {method} {url} after {exc.attempts} attempts ({reason})"
            ) from exc.error
        except httpx.HTTPError as exc:
            raise TailnetUnavailable(f"Tailscale API request {method} {url} failed: {exc}") from exc
        response = sent.response
        if response.is_success or response.is_redirect:
            return response
        raise status_error(response, not_found, f" ({sent.note})" if sent.note else "")


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
        json: object = None,
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
