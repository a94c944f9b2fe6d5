"""HTTP plumbing shared by the EDR vendor clients: retries, a client-side rate limiter, error mapping.

``VendorHttp.get_json`` sends one GET with bounded retries on 429, 5xx, timeouts and connection errors
(honouring ``Retry-After``) and maps failures to ``app.vendors.base`` errors: 401/403 → ``VendorAuthError``,
retries exhausted → ``VendorTransientError``, a 2xx body that is not JSON → ``VendorDataError``, any other
refusal (400, 404, a redirect) → ``VendorError``. Messages name the vendor and the URL *path* only and pass
through ``redact`` so a secret the server echoes back never reaches an admin or a log.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx

from app.core import metrics
from app.core.clock import Clock, utcnow
from app.vendors.base import Agent, Progress, VendorAuthError, VendorDataError, VendorError, VendorTransientError

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Monotonic = Callable[[], float]
DescribeError = Callable[[httpx.Response], str]

REDACTED = "***"
_EPSILON = 1e-6  # float slack so a sleep of exactly the computed delay always frees a slot
MAX_DETAIL = 300
_RETRYABLE_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to try and how long to wait between tries (exponential backoff with "equal" jitter).

    ``rate_limited_base`` replaces ``base`` after a 429 without ``Retry-After``; a ``Retry-After`` longer
    than ``max_retry_after`` is not waited out: the request fails at once as transient (next run retries).
    """

    max_attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    rate_limited_base: float = 2.0
    max_retry_after: float = 120.0

    def backoff(self, retry: int, rng: random.Random, *, rate_limited: bool = False) -> float:
        """Delay before retry number ``retry`` (0-based): uniform in [d/2, d], d = min(cap, base * 2**retry)."""
        base = self.rate_limited_base if rate_limited else self.base
        ceiling = min(self.cap, base * 2**retry)
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


class SlidingWindowLimiter:
    """At most ``max_requests`` request starts in any ``window`` seconds; ``acquire`` sleeps until allowed.

    Thread-safe; callers queue on the lock, so requests start in order. ``clock`` is monotonic seconds.
    """

    def __init__(
        self, max_requests: int, window: float, *, clock: Monotonic = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if max_requests < 1 or window <= 0:
            raise ValueError("a rate limit needs max_requests >= 1 and window > 0")
        self.max_requests = max_requests
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until one more request may start, record its start and return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self.clock()
                while self._starts and now - self._starts[0] >= self.window - _EPSILON:
                    self._starts.popleft()
                if len(self._starts) < self.max_requests:
                    self._starts.append(now)
                    return waited
                delay = self._starts[0] + self.window - now
                self.sleep(delay)
                waited += delay

    def starts(self) -> list[float]:
        """Start times still inside the window (oldest first)."""
        with self._lock:
            return list(self._starts)


_shared_limiters: dict[str, SlidingWindowLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(scope: str, secret: str, max_requests: int, window: float) -> SlidingWindowLimiter:
    """One process-wide limiter per (``scope``, ``secret``), so every client of one vendor account shares it.

    The secret is only hashed into the lookup key, never stored.
    """
    digest = hashlib.sha256(f"{scope}\0{secret}\0{max_requests}\0{window}".encode()).hexdigest()
    with _shared_lock:
        limiter = _shared_limiters.get(digest)
        if limiter is None:
            limiter = _shared_limiters[digest] = SlidingWindowLimiter(max_requests, window)
        return limiter


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per ``Retry-After`` (delta seconds, also fractional, or an HTTP-date); ``None`` if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _text_of(item: Any) -> str:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, dict):
        parts: list[str] = []
        for key in ("title", "detail", "message", "error", "error_description"):
            value = item.get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in parts:
                parts.append(value.strip())
        return ": ".join(parts)
    return ""


def json_error_detail(response: httpx.Response) -> str:
    """A short reason from a JSON error body: ``errors[]`` (title/detail), ``error``, ``message``; else ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, list):
        texts = [t for t in (_text_of(e) for e in errors) if t]
        if texts:
            return _clip("; ".join(texts))
    for key in ("message", "error", "detail", "title"):
        text = _text_of(body.get(key))
        if text:
            return _clip(text)
    return ""


def parse_timestamp(value: Any, field: str, where: str) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime (naive counts as UTC); ``None`` for null/empty.

    Raises ``VendorDataError`` for anything else; ``where`` names the vendor and agent for the message.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise VendorDataError(f"{where}: {field} is not a timestamp string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise VendorDataError(f"{where}: {field} {value[:40]!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class VendorHttp:
    """GET JSON from one vendor's API with retries, an optional rate limiter and typed, redacted errors."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        label: str,
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        limiter: SlidingWindowLimiter | None = None,
        describe_error: DescribeError = json_error_detail,
        secrets: Iterable[str] = (),
        wall_clock: Clock = utcnow,
    ) -> None:
        self.client = client
        self.label = label
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.SystemRandom()
        self.limiter = limiter
        self.describe_error = describe_error
        self._secrets = tuple(s for s in secrets if s)
        self.wall_clock = wall_clock

    @metrics.count_api_errors(VendorError, api=lambda http: http.label)
    def get_json(self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str]) -> Any:
        """The decoded JSON body of a successful ``GET url``; raises a ``VendorError`` subclass otherwise."""
        path = httpx.URL(url).path
        attempts = max(1, self.policy.max_attempts)
        for attempt in range(1, attempts + 1):
            if self.limiter is not None:
                waited = self.limiter.acquire()
                if waited:
                    log.info("%s API: client-side rate limit, waited %.2fs", self.label, waited)
            try:
                response = self.client.get(url, params=params, headers=headers)
            except _RETRYABLE_EXCEPTIONS as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                if attempt == attempts:
                    raise VendorTransientError(
                        f"{self.label} API GET {path} did not answer after {attempts} attempts ({reason})"
                    ) from None
                self._wait(path, reason, self.policy.backoff(attempt - 1, self.rng), attempt)
                continue
            except httpx.HTTPError as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                raise VendorError(f"{self.label} API GET {path} failed: {reason}") from None
            status = response.status_code
            if response.is_success:
                return self._decode(response, path)
            if status in (401, 403):
                raise VendorAuthError(
                    f"{self.label} refused the credentials ({self._status_text(response)}); check them"
                )
            if status != 429 and status != 408 and status < 500:
                raise VendorError(f"{self.label} API GET {path} failed: {self._status_text(response)}")
            failure = self._status_text(response)
            if attempt == attempts:
                raise VendorTransientError(
                    f"{self.label} API GET {path}: {failure} (gave up after {attempts} attempts)"
                )
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.wall_clock())
            if retry_after is None:
                delay = self.policy.backoff(attempt - 1, self.rng, rate_limited=status == 429)
            elif retry_after > self.policy.max_retry_after:
                raise VendorTransientError(
                    f"{self.label} API GET {path}: {failure}; asked to retry after {retry_after:.0f}s, "
                    f"longer than {self.policy.max_retry_after:.0f}s"
                )
            else:
                delay = retry_after
            self._wait(path, failure, delay, attempt)
        raise AssertionError("unreachable")

    def _decode(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise VendorDataError(
                f"{self.label} API GET {path} answered HTTP {response.status_code} with a body that is not JSON"
            ) from None

    def _status_text(self, response: httpx.Response) -> str:
        text = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        detail = self.describe_error(response)
        if response.is_redirect and response.headers.get("Location"):
            target = httpx.URL(response.headers["Location"])
            where = f"{target.scheme}://{target.host}{target.path}" if target.host else target.path
            detail = detail or f"redirected to {where}; check the URL"
        return self._redact(f"{text}: {detail}" if detail else text)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _wait(self, path: str, reason: str, delay: float, attempt: int) -> None:
        log.warning(
            "%s API GET %s: %s; retrying in %.2fs (attempt %d of %d)",
            self.label,
            path,
            reason,
            delay,
            attempt,
            self.policy.max_attempts,
        )
        self.sleep(delay)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a vendor's agent list: its raw items, the next page token or cursor, the total if told."""

    items: list[Any]
    next: str | None
    total: int | None = None


def collect_agents(
    fetch: Callable[[str | None], Page],
    convert: Callable[[Any, int], Agent],
    *,
    label: str,
    path: str,
    progress: Progress | None,
    clock: Monotonic,
    max_pages: int,
    pointer_name: str,
) -> list[Agent]:
    """Every page of an agent list, in listing order; all or nothing.

    ``fetch(token)`` gets one page (``None`` for the first). An agent listed twice while paging keeps its first
    place with the newer copy. A repeated ``pointer_name`` or more than ``max_pages`` pages is a data error, so
    paging always ends.
    """
    started = clock()
    agents: list[Agent] = []
    index: dict[str, int] = {}
    seen: set[str] = set()
    token: str | None = None
    for number in range(1, max_pages + 1):
        page = fetch(token)
        for position, raw in enumerate(page.items, start=len(agents)):
            agent = convert(raw, position)
            if agent.id in index:
                agents[index[agent.id]] = agent
            else:
                index[agent.id] = len(agents)
                agents.append(agent)
        if progress is not None:
            progress(len(agents), page.total)
        if page.next is None:
            log.info("%s: fetched %d agents in %d pages (%.1fs)", label, len(agents), number, clock() - started)
            return agents
        if page.next in seen:
            raise VendorDataError(f"{label} API {path} repeated a {pointer_name}; paging would never end")
        seen.add(page.next)
        token = page.next
    raise VendorDataError(f"{label} API {path} still had more pages after {max_pages}")


class OwnedClient:
    """Closing and ``with`` support for a vendor client holding ``_client`` (closed only if ``_owns_client``)."""

    _client: httpx.Client
    _owns_client: bool

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
