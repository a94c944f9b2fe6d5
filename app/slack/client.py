"""The Slack Web API client every part of the app uses, with slack_sdk's own retry handlers."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler

MAX_RETRY_AFTER = 10
"""Longest ``Retry-After`` (seconds) worth waiting for inside one call: a person is waiting on the click.
A longer one fails the call at once; the outbox retries notifications later, a person is told to try again."""


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (waits ``Retry-After``), but not when Slack asks for longer than ``max_wait``."""

    def __init__(self, max_retry_count: int = 2, max_wait: int = MAX_RETRY_AFTER) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        values = {k.lower(): v for k, v in (response.headers or {}).items()}.get("retry-after") or ["1"]
        try:
            return int(values[0]) <= self.max_wait
        except (TypeError, ValueError):
            return True  # no usable header: the handler waits about a second


def retry_handlers() -> list[RetryHandler]:
    """Connection resets, 429 with ``Retry-After`` (bounded) and 500/503, each retried by slack_sdk."""
    return [
        ConnectionErrorRetryHandler(max_retry_count=1),
        BoundedRateLimitRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=1),
    ]


def slack_client(token: str | None, base_url: str, *, timeout: int = 10) -> WebClient:
    """A WebClient for ``base_url`` (``SLACK_API_URL``) that retries what Slack says to retry."""
    return WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=retry_handlers())
