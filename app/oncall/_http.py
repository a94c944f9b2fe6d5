"""One GET through ``app.core.http.RetryingClient`` with the on-call providers' error mapping.

401/403 → ``OnCallAuthError``; retries exhausted, network errors or another 5xx → ``OnCallUnavailable``; a 2xx
body that is not a JSON object → ``OnCallDataError``; any other refusal (400, 404) → ``OnCallError``. Messages
name the provider and the URL path only and never contain the token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from app.core.clock import Clock, utcnow
from app.core.http import RetryingClient, RetryPolicy, Sleep, Unanswered, status_line
from app.oncall.base import (
    ONCALL_RETRY,
    ONCALL_TIMEOUT,
    OnCallAuthError,
    OnCallDataError,
    OnCallError,
    OnCallUnavailable,
)

Params = Sequence[tuple[str, str]]


def base_url(url: str, *, label: str) -> str:
    """The configured base URL without a trailing ``/`` (``https://`` added when no scheme is given)."""
    text = url.strip() or ""
    if "://" not in text:
        text = f"https://{text}"
    text = text.rstrip("/")
    parsed = httpx.URL(text)
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.userinfo:
        raise ValueError(f"the {label} base URL {url!r} is not an http(s) URL with a host")
    return text


class OnCallHttp:
    """GETs JSON objects from one provider's API with its auth headers; thread-safe."""

    def __init__(
        self,
        label: str,
        url: str,
        headers: dict[str, str],
        secret: str,
        *,
        client: httpx.Client | None = None,
        policy: RetryPolicy = ONCALL_RETRY,
        sleep: Sleep = time.sleep,
        clock: Clock = utcnow,
    ) -> None:
        self.label = label
        self.url = base_url(url, label=label)
        self._secret = secret
        self._owned = client is None
        self._client = client or httpx.Client(timeout=ONCALL_TIMEOUT, headers=headers)
        if client is not None:
            self._client.headers.update(headers)
        self._retrying = RetryingClient(self._client, policy, name=label, sleep=sleep, clock=clock, redact=self._redact)

    def get_json(self, path: str, params: Params = ()) -> dict[str, Any]:
        """The JSON object at ``path`` (repeated keys allowed in ``params``); an ``OnCallError`` otherwise."""
        url = str(httpx.URL(f"{self.url}{path}", params=list(params)))
        try:
            sent = self._retrying.send("GET", url)
        except Unanswered as exc:
            raise OnCallUnavailable(f"{self.label} API {path}: {self._redact(str(exc))}") from None
        except httpx.HTTPError as exc:
            raise OnCallError(f"{self.label} API {path}: {type(exc).__name__}") from None
        response = sent.response
        where = f"{self.label} API {path} answered {status_line(response)}"
        if response.status_code in (401, 403):
            raise OnCallAuthError(f"{where}: the token was refused")
        if sent.stopped is not None or response.status_code >= 500:
            note = f" ({sent.note})" if sent.note else ""
            raise OnCallUnavailable(f"{where}{note}")
        if not response.is_success:
            raise OnCallError(where)
        try:
            body = response.json()
        except ValueError:
            raise OnCallDataError(f"{self.label} API {path} answered something other than JSON") from None
        if not isinstance(body, dict):
            raise OnCallDataError(f"{self.label} API {path} answered something other than a JSON object")
        return body

    def close(self) -> None:
        """Release the connection pool (only a client this object made)."""
        if self._owned:
            self._client.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text
