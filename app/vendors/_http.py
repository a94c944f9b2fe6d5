"""HTTP plumbing shared by the EDR vendor clients: error mapping, a client-side rate limiter, paging.

``VendorHttp.get_json`` sends one GET through the shared ``app.core.http.RetryingClient`` (retries on 408,
429, 500/502/503/504, timeouts and connection errors, honouring ``Retry-After``, within ``VENDOR_RETRY``'s
time budget) and maps failures to ``app.vendors.base`` errors: 401/403 → ``VendorAuthError``, retries
exhausted or another 5xx → ``VendorTransientError``, a 2xx body that is not JSON → ``VendorDataError``, any
other refusal (400, 404, a redirect) → ``VendorError``. Messages name the vendor and the URL *path* only and
pass through ``redact`` so a secret the server echoes back never reaches an admin or a log.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Self

import httpx

from app.core import metrics
from app.core.clock import Clock, utcnow
from app.core.http import (
    Monotonic,
    RetryingClient,
    RetryPolicy,
    Sent,
    Sleep,
    StopReason,
    Unanswered,
    describe_error,
    status_line,
)
from app.vendors.base import (
    VERIFY_RETRY,
    Agent,
    Progress,
    VendorAuthError,
    VendorDataError,
    VendorError,
    VendorTransientError,
)

log = logging.getLogger(__name__)

DescribeError = Callable[[httpx.Response], str]

REDACTED = "***"
_EPSILON = 1e-6  # float slack so a sleep of exactly the computed delay always frees a slot
MAX_DETAIL = 300

VENDOR_RETRY = RetryPolicy(
    max_attempts=5, budget=300.0, base=1.0, cap=30.0, rate_limited_base=2.0, max_retry_after=120.0
)
"""A sync runs in the background: five minutes per request, and a ``Retry-After`` of up to two minutes is
waited out; a longer one fails the request as transient at once (the next scheduled run tries again)."""


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


def api_base_url(
    url: str | None, *, malformed: str, default: str | None = None, missing: str = "", suffixes: Iterable[str] = ()
) -> str:
    """A vendor API's base URL as settings give it: ``https://`` added when no scheme is given, no trailing ``/``,
    and without the first of ``suffixes`` it ends with (an API path pasted along). Empty is ``default``, or
    ``ValueError(missing)`` without one; ``ValueError(malformed)`` unless http(s) with a host, no query or user info.
    """
    text = (url or "").strip() or (default or "")
    if not text:
        raise ValueError(missing)
    if "://" not in text:
        text = f"https://{text}"
    text = text.rstrip("/")
    for suffix in suffixes:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    parsed = httpx.URL(text)
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.userinfo:
        raise ValueError(malformed)
    return text


def page_items(body: Any, field: str, *, label: str, path: str) -> tuple[dict[str, Any], list[Any]]:
    """One page's JSON object and its list of items under ``field``; ``VendorDataError`` if it is not that shape."""
    if not isinstance(body, dict):
        raise VendorDataError(f"{label} API {path} answered something other than a JSON object")
    items = body.get(field)
    if not isinstance(items, list):
        article = "an" if field[:1] in "aeiou" else "a"
        raise VendorDataError(f"{label} API {path} answered without {article} {field} list")
    return body, items


def next_pointer(body: Mapping[str, Any], field: str, *, label: str, path: str) -> tuple[Mapping[str, Any], str | None]:
    """A page's ``pagination`` object (empty if absent) and its ``field``: the next page's cursor or token, ``None``
    when absent, null or empty (the last page); ``VendorDataError`` if either has the wrong JSON type."""
    pagination = body.get("pagination")
    if pagination is None:
        return {}, None
    if not isinstance(pagination, dict):
        raise VendorDataError(f"{label} API {path} answered a pagination that is not an object")
    pointer = pagination.get(field)
    if pointer is not None and not isinstance(pointer, str):
        raise VendorDataError(f"{label} API {path} answered a {field} that is not a string")
    return pagination, (pointer or None)


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
    """JSON from one vendor's API (GET, or a POST lookup) with retries, an optional rate limiter and typed errors.

    ``policy`` defaults to ``VENDOR_RETRY``; ``monotonic`` measures its time budget, ``wall_clock`` reads
    ``Retry-After`` dates. The limiter is asked before every attempt, retries included.
    """

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
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.client = client
        self.label = label
        self.limiter = limiter
        self.describe_error = describe_error
        self._secrets = tuple(s for s in secrets if s)
        self.http = RetryingClient(
            client,
            policy or VENDOR_RETRY,
            name=label,
            sleep=sleep,
            monotonic=monotonic,
            clock=wall_clock,
            rng=rng,
            before_attempt=self._wait_for_limiter,
            describe=self._status_text,
            redact=self._redact,
        )

    @metrics.count_api_errors(VendorError, api=lambda http: http.label)
    def get_json(self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str]) -> Any:
        """The decoded JSON body of a successful ``GET url``; raises a ``VendorError`` subclass otherwise."""
        return self._send_json("GET", url, params=params, headers=headers)

    @metrics.count_api_errors(VendorError, api=lambda http: http.label)
    def post_json(self, url: str, *, body: object, headers: Mapping[str, str]) -> Any:
        """As ``get_json`` for a read that takes a JSON body (a ``POST`` lookup of many ids); retried alike."""
        return self._send_json("POST", url, json=body, headers=headers)

    def _send_json(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        json: object = None,
    ) -> Any:
        path = httpx.URL(url).path
        try:
            sent = self.http.send(method, url, params=params, json=json, headers=headers, body_apart=True)
        except Unanswered as exc:
            reason = self._redact(describe_error(exc.error))
            raise VendorTransientError(
                f"{self.label} API {method} {path} did not answer after {exc.attempts} attempts ({reason})"
            ) from None
        except httpx.HTTPError as exc:
            raise VendorError(f"{self.label} API {method} {path} failed: {self._redact(describe_error(exc))}") from None
        if sent.response.is_success:
            return self._decode(sent, path)
        raise self._failure(sent, path)

    def _failure(self, sent: Sent, path: str) -> VendorError:
        """The error for an answer that is not a success (after any retries)."""
        response = sent.response
        method = response.request.method
        if response.status_code in (401, 403):
            return VendorAuthError(f"{self.label} refused the credentials ({self._status_text(response)}); check them")
        failure = self._status_text(response)
        if sent.stopped is StopReason.RETRY_AFTER:
            return VendorTransientError(f"{self.label} API {method} {path}: {failure}; {sent.note}")
        if sent.stopped is not None:
            return VendorTransientError(f"{self.label} API {method} {path}: {failure} ({sent.note})")
        if response.status_code >= 500:
            return VendorTransientError(f"{self.label} API {method} {path}: {failure}")
        return VendorError(f"{self.label} API {method} {path} failed: {failure}")

    def _wait_for_limiter(self) -> None:
        if self.limiter is not None:
            waited = self.limiter.acquire()
            if waited:
                log.info("%s API: client-side rate limit, waited %.2fs", self.label, waited)

    def _decode(self, sent: Sent, path: str) -> Any:
        response = sent.response
        try:
            return jsonlib.loads(sent.body if sent.body is not None else response.content)
        except ValueError:
            method = response.request.method
            raise VendorDataError(
                f"{self.label} API {method} {path} answered HTTP {response.status_code} with a body that is not JSON"
            ) from None

    def _status_text(self, response: httpx.Response) -> str:
        text = status_line(response)
        detail = self.describe_error(response)
        if response.is_redirect and response.headers.get("Location"):
            target = httpx.URL(response.headers["Location"])
            where = f"{target.scheme}://{target.host}{target.path}" if target.host else target.path
            detail = detail or f"redirected to {where}; check the URL"
        return self._redact(f"{text}: {detail}" if detail else text)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def sync_and_verify_http(
    client: httpx.Client,
    *,
    label: str,
    retry: RetryPolicy,
    sleep: Sleep,
    rng: random.Random | None,
    secrets: Iterable[str],
    monotonic: Monotonic,
    limiter: SlidingWindowLimiter | None = None,
    describe_error: DescribeError = json_error_detail,
    wall_clock: Clock = utcnow,
    http_class: type[VendorHttp] = VendorHttp,
) -> tuple[VendorHttp, VendorHttp]:
    """A vendor client's two ``VendorHttp`` on one connection pool, limiter and redaction: the first on the sync's
    retry budget ``retry``, the second on ``VERIFY_RETRY`` (``verify`` answers within seconds)."""
    secrets = tuple(secrets)
    sync, verify = (
        http_class(
            client,
            label=label,
            policy=policy,
            sleep=sleep,
            rng=rng,
            limiter=limiter,
            describe_error=describe_error,
            secrets=secrets,
            wall_clock=wall_clock,
            monotonic=monotonic,
        )
        for policy in (retry, VERIFY_RETRY)
    )
    return sync, verify


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
    shared: dict[str, str] = {}
    seen: set[str] = set()
    # The next page is asked for as soon as this one says where it is, and arrives while this one's items are
    # converted: the vendor's latency (and its work) overlaps ours instead of adding up, page after page. One
    # request is in flight at a time, so paging order, rate limits and retries are as before.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{label}-page") as ahead:
        pending: Future[Page] = ahead.submit(fetch, None)
        for number in range(1, max_pages + 1):
            page = pending.result()
            if page.next is not None:
                if page.next in seen:
                    raise VendorDataError(f"{label} API {path} repeated a {pointer_name}; paging would never end")
                seen.add(page.next)
                if number < max_pages:
                    pending = ahead.submit(fetch, page.next)
            _add_page(agents, index, page.items, convert, shared)
            if progress is not None:
                progress(len(agents), page.total)
            if page.next is None:
                log.info("%s: fetched %d agents in %d pages (%.1fs)", label, len(agents), number, clock() - started)
                return agents
    raise VendorDataError(f"{label} API {path} still had more pages after {max_pages}")


OffsetFetch = Callable[[int, int], tuple[list[Any], int]]
"""``fetch(skip, limit)`` → (the page's raw items, the listing's total as that page tells it)."""


def collect_offset_pages(
    fetch: OffsetFetch,
    convert: Callable[[Any, int], Agent],
    *,
    limit: int,
    in_flight: int,
    label: str,
    path: str,
    progress: Progress | None,
    clock: Monotonic,
    max_pages: int,
) -> list[Agent]:
    """Every page of an offset-paged listing (``skip``/``limit`` with a total), up to ``in_flight`` at once; all or
    nothing, in listing order, an agent listed twice keeping its first place with the newer copy.

    A page's address does not depend on the previous answer, so once the first page proves the server honours
    ``limit`` (it came back full) and gives the total, the other pages are asked for together: a vendor's latency
    is paid about pages / ``in_flight`` times instead of once a page. Every request still goes through the
    client's rate limiter and retry policy. A page shorter than asked before the end (a server capping ``limit``
    lower, or systems removed meanwhile) is followed by sequential requests from where it ended, and a total
    that grew meanwhile by sequential requests past the last page, as a one-at-a-time client would do.
    """
    started = clock()
    agents: list[Agent] = []
    index: dict[str, int] = {}
    shared: dict[str, str] = {}
    requests = 0

    def take(skip: int, size: int) -> tuple[list[Any], int]:
        nonlocal requests
        requests += 1
        if requests > max_pages:
            raise VendorDataError(f"{label} API {path} still had more pages after {max_pages}")
        return fetch(skip, size)

    def add(items: list[Any], total: int) -> None:
        _add_page(agents, index, items, convert, shared)
        if progress is not None:
            progress(len(agents), total)

    items, total = take(0, limit)
    add(items, total)
    position = len(items)
    if in_flight > 1 and len(items) == limit and position < total:
        offsets = range(limit, total, limit)
        if len(offsets) + 1 > max_pages:
            raise VendorDataError(f"{label} API {path} still had more pages after {max_pages}")
        requests += len(offsets)
        pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=f"{label}-pages")
        ahead: deque[tuple[int, Future[tuple[list[Any], int]]]] = deque()
        planned = iter(offsets)
        try:
            while True:
                # at most twice ``in_flight`` pages asked for and not yet converted: answered pages wait in memory
                for skip in islice(planned, 2 * in_flight - len(ahead)):
                    ahead.append((skip, pool.submit(fetch, skip, limit)))
                if not ahead:
                    break
                skip, future = ahead.popleft()
                page, page_total = future.result()
                position = _fill_gap(take, add, position, skip, limit)
                if position > skip:  # the gap's pages reached into this one: keep only what it adds
                    page = page[position - skip :]
                    skip = position
                add(page, page_total)
                total = max(total, page_total)
                position = skip + len(page)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a failed listing does not wait for the rest
    while position < total:  # sequential: no page planned ahead, a short page, or a total that grew
        items, page_total = take(position, limit)
        if not items:
            break
        add(items, page_total)
        total = page_total
        position += len(items)
    log.info("%s: fetched %d agents in %d requests (%.1fs)", label, len(agents), requests, clock() - started)
    return agents


def _fill_gap(
    take: Callable[[int, int], tuple[list[Any], int]],
    add: Callable[[list[Any], int], None],
    position: int,
    until: int,
    limit: int,
) -> int:
    """Sequential requests from ``position`` up to ``until`` (a page planned ahead came back short): the new
    position."""
    while position < until:
        items, total = take(position, min(limit, until - position))
        if not items:
            break
        add(items, total)
        position += len(items)
    return position


SHARED_VALUES_MAX = 4096
"""Distinct string values a listing shares among its agents (beyond it, new values stay as they came)."""


def _add_page(
    agents: list[Agent],
    index: dict[str, int],
    items: list[Any],
    convert: Callable[[Any, int], Agent],
    shared: dict[str, str],
) -> None:
    """Convert a page's items onto ``agents``; an agent listed twice keeps its first place with the newer copy."""
    for position, raw in enumerate(items, start=len(agents)):
        agent = convert(raw, position)
        if agent.attributes.__class__ is dict:
            _share_values(agent.attributes, shared)  # type: ignore[arg-type]
        if agent.id in index:
            agents[index[agent.id]] = agent
        else:
            index[agent.id] = len(agents)
            agents.append(agent)


def _share_values(attributes: dict[str, Any], shared: dict[str, str]) -> None:
    """Equal string values of different agents made one object (``shared``: the listing's first of each).

    JSON decoding makes a new string for every occurrence: 50,000 agents reporting ``compliant`` or an agent version
    held 50,000 copies each, the largest part of a first sync's peak memory for vendors reporting strings.
    """
    for key, value in attributes.items():
        if value.__class__ is not str:
            continue
        same = shared.get(value)
        if same is None:
            if len(shared) < SHARED_VALUES_MAX:
                shared[value] = value
        elif same is not value:
            attributes[key] = same  # an existing key: the dict does not change size while iterated


def verified_count(items: list[Any], convert: Callable[[Any, int], Agent]) -> int:
    """How many agents a ``verify`` page listed, each converted like a synced one first, so a URL that answers
    something other than the vendor's agents fails verification rather than the first sync."""
    for position, raw in enumerate(items):
        convert(raw, position)
    return len(items)


class OwnedClient:
    """Closing and ``with`` support for a vendor client holding ``_client`` (closed only if ``_owns_client``)."""

    _client: httpx.Client
    _owns_client: bool

    def _own_client(self, http_client: httpx.Client | None, timeout: float) -> httpx.Client:
        """``http_client``, or a new one (no redirects, ``timeout`` seconds) that ``close`` will close."""
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
        return self._client

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
