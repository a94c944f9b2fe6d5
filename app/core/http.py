"""The one retrying HTTP client: the Tailscale API and every EDR vendor API are called through ``RetryingClient``.

tenacity runs the loop (attempts, waits, sleeping); this module adds what HTTP needs on top: which answers
are worth another try, ``Retry-After``, one time budget per call that also cuts each attempt's timeouts, and
a plain account of why it stopped (``Sent``, ``Unanswered``) that each caller turns into its own errors.

Where the two former retry loops (``app/tailnet/http.py`` and ``app/vendors/_http.py``) differed, one
behaviour was chosen for both:

- **Equal jitter** (a wait is uniform in [d/2, d], d = min(cap, base * 2**retry)): every retry waits at
  least half its backoff, so a rate-limited API (Huntress's 60 requests a minute, Tailscale's 429s) is never
  asked again at once. Full jitter's near-zero waits only pay off with many competing clients; accessbot is
  one client per account. ``RetryPolicy.jitter = "full"`` remains available.
- **Statuses retried**: 408, 429, 500, 502, 503 and 504 (the Tailscale loop did not retry 408; both retried
  every 5xx, but 501, 505 and the like are final answers that a retry does not change).
- **``Retry-After``** is read as delta-seconds, fractional allowed, or as an HTTP date; anything else (a
  negative number, garbage) is ignored and the own backoff is used. A server's wait is never shortened: one
  longer than ``max_retry_after``, or longer than what the time budget has left, makes the call give up at
  once (the Tailscale loop used to cap it and retry early, which only earns another refusal).
- **A total time budget for every call** (the vendor loop had none): the attempts, their timeouts and the
  waits between them. Each attempt's timeouts are cut to what is left, and a wait that would leave less than
  ``min_attempt`` seconds for the next attempt is not taken.
- **Network errors** (timeouts, refused or reset connections, a broken response) are retried like a 503;
  any other ``httpx`` error (unsupported scheme, bad URL) is raised at once.

Sleep, the monotonic clock (budget), the wall clock (``Retry-After`` dates) and the random source (jitter)
are injectable so tests never really wait.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal

import httpx
import tenacity

from app.core.clock import Clock, utcnow

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Monotonic = Callable[[], float]
Jitter = Literal["full", "equal"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Answers that say "try again": request timeout, rate limited, and the transient server errors."""
NETWORK_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
"""Transport errors worth another attempt; other ``httpx`` errors (bad scheme, bad URL) are not."""
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to try, how long to wait between tries and how long one call may take in all.

    The defaults suit a call a person waits on (an approval in ``granting``): at most 45 s in all. Vendor
    syncs run in the background and allow longer (see ``app.vendors._http.VENDOR_RETRY``).
    """

    max_attempts: int = 5
    budget: float = 45.0
    """Seconds one call may take in all: attempts, their timeouts and the waits between them."""
    base: float = 0.5
    """The first backoff ceiling; it doubles with each retry."""
    cap: float = 30.0
    """The largest backoff ceiling (a ``Retry-After`` is bounded by ``max_retry_after`` instead)."""
    jitter: Jitter = "equal"
    rate_limited_base: float | None = None
    """``base`` after a 429 that came without ``Retry-After`` (``None``: the same ``base``)."""
    max_retry_after: float = 30.0
    """The longest ``Retry-After`` waited out; a longer one ends the call at once."""
    retry_statuses: frozenset[int] = RETRY_STATUSES
    retry_network_errors: bool = True
    min_attempt: float = 1.0
    """Seconds of the budget a retry must still have; also the shortest timeout an attempt gets."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.budget <= 0 or min(self.base, self.cap, self.min_attempt) < 0:
            raise ValueError("a retry policy needs max_attempts >= 1, budget > 0 and no negative times")

    def backoff(self, retry: int, rng: random.Random, *, rate_limited: bool = False) -> float:
        """The wait before retry number ``retry`` (0-based), jittered below d = min(cap, base * 2**retry)."""
        base = self.rate_limited_base if rate_limited and self.rate_limited_base is not None else self.base
        ceiling = min(self.cap, base * 2 ** min(retry, 64))
        if self.jitter == "full":
            return rng.uniform(0.0, ceiling)
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delta seconds, fractional allowed, or an HTTP date).

    ``None`` when absent or unusable (negative, garbage, a date without a zone); a date in the past is 0.
    """
    text = (value or "").strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


class StopReason(StrEnum):
    """Why a call stopped retrying an answer or error that was worth another try."""

    ATTEMPTS = "attempts"
    """``max_attempts`` were made."""
    BUDGET = "budget"
    """The next wait would not leave ``min_attempt`` seconds of the time budget."""
    RETRY_AFTER = "retry_after"
    """The server asked for a wait longer than ``max_retry_after``."""


@dataclass(frozen=True, slots=True)
class Sent:
    """The last answer of a call: final (``stopped is None``), or the last of retries that ran out.

    ``note`` says why they ran out, for the caller's error message ("" when they did not). ``body``: the
    body of a successful answer sent with ``body_apart`` (its ``response`` then holds no copy of it).
    """

    response: httpx.Response
    attempts: int
    stopped: StopReason | None = None
    note: str = ""
    body: bytes | None = None


class Unanswered(Exception):
    """Every attempt of a call failed with a network error; ``error`` is the last one (also ``__cause__``)."""

    def __init__(self, error: httpx.TransportError, attempts: int, stopped: StopReason) -> None:
        self.error = error
        self.attempts = attempts
        self.stopped = stopped
        super().__init__(f"no answer after {attempts} attempts ({describe_error(error)})")


def describe_error(error: BaseException) -> str:
    """``ReadTimeout: timed out``, or just the type name when the error has no message."""
    return f"{type(error).__name__}: {error}".rstrip(": ")


def status_line(response: httpx.Response) -> str:
    """``HTTP 503 Service Unavailable``."""
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _unchanged(text: str) -> str:
    return text


def _cut(timeout: float | None, left: float) -> float:
    return left if timeout is None else min(timeout, left)


@dataclass(frozen=True, slots=True)
class _Plan:
    delay: float
    stopped: StopReason | None
    retry_after: float | None


@dataclass(slots=True)
class _Call:
    """The state of one ``send``: its deadline, attempts made, and the plan after each retryable outcome."""

    deadline: float
    attempts: int = 0
    plans: dict[int, _Plan] = field(default_factory=dict)
    stopped: StopReason | None = None
    body: bytes | None = None


class RetryingClient:
    """Requests through an ``httpx.Client``, retried per a ``RetryPolicy``; thread-safe (state is per call).

    ``name`` labels the log lines; ``before_attempt`` runs before every attempt (a client-side rate limiter);
    ``describe`` and ``redact`` shape what a retry logs about an answer or error (a vendor's error detail,
    with its secrets hidden).
    """

    def __init__(
        self,
        client: httpx.Client,
        policy: RetryPolicy | None = None,
        *,
        name: str = "HTTP",
        sleep: Sleep = time.sleep,
        monotonic: Monotonic = time.monotonic,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        before_attempt: Callable[[], object] | None = None,
        describe: Callable[[httpx.Response], str] = status_line,
        redact: Callable[[str], str] = _unchanged,
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.name = name
        self.sleep = sleep
        self.monotonic = monotonic
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.before_attempt = before_attempt
        self.describe = describe
        self.redact = redact

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: object = None,
        data: Mapping[str, str] | None = None,
        body_apart: bool = False,
    ) -> Sent:
        """The final answer, or the last one once retries ran out (``Sent.stopped`` says why).

        ``body_apart``: a successful answer's body comes back in ``Sent.body`` instead of in the response. An
        ``httpx.Response`` is held in a reference cycle (its stream points back at it), so the body it caches
        lives until the garbage collector gets to it; a page of 50,000-agent listings would keep up to half a
        megabyte each alive, past a sync that holds off full collections (``app/core/gc_pause.py``). Apart, the
        body is freed as soon as the caller has decoded it.

        Raises ``Unanswered`` when network errors lasted to the end, and any other ``httpx.HTTPError`` at once.
        """
        call = _Call(deadline=self.monotonic() + self.policy.budget)
        path = httpx.URL(url).path
        retrying = tenacity.Retrying(
            retry=self._retryable,
            wait=lambda state: self._plan(call, state).delay,
            stop=lambda state: self._plan(call, state).stopped is not None,
            sleep=lambda seconds: self.sleep(float(seconds)),
            before_sleep=lambda state: self._log_retry(method, path, state, self._plan(call, state).delay),
            retry_error_callback=lambda state: self._give_up(call, state),
        )

        def attempt() -> httpx.Response:
            if self.before_attempt is not None:
                self.before_attempt()
            call.attempts += 1
            timeout = self._timeout(call.deadline)
            if not body_apart:
                return self.client.request(
                    method, url, headers=headers, params=params, json=json, data=data, timeout=timeout
                )
            request = self.client.build_request(
                method, url, headers=headers, params=params, json=json, data=data, timeout=timeout
            )
            response = self.client.send(request, stream=True)
            try:
                if response.is_success:
                    call.body = b"".join(response.iter_bytes())  # not cached on the response
                else:
                    call.body = None
                    response.read()  # an error's body is small and read for its detail
            finally:
                response.close()
            return response

        response: httpx.Response = retrying(attempt)
        stopped = call.stopped
        note = "" if stopped is None else self._note(stopped, call)
        body = call.body if body_apart and response.is_success else None
        call.body = None  # the retry state around ``call`` is a reference cycle: it must not keep the body
        return Sent(response, call.attempts, stopped, note, body)

    def _retryable(self, state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None:
            return False
        if outcome.failed:
            return self.policy.retry_network_errors and isinstance(outcome.exception(), NETWORK_ERRORS)
        response: httpx.Response = outcome.result()
        return response.status_code in self.policy.retry_statuses

    def _plan(self, call: _Call, state: tenacity.RetryCallState) -> _Plan:
        """Wait and stop decision after a retryable outcome; computed once (tenacity asks for wait and stop)."""
        plan = call.plans.get(state.attempt_number)
        if plan is None:
            plan = call.plans[state.attempt_number] = self._decide(call, state)
        return plan

    def _decide(self, call: _Call, state: tenacity.RetryCallState) -> _Plan:
        policy, attempt, outcome = self.policy, state.attempt_number, state.outcome
        if attempt >= policy.max_attempts:
            return _Plan(0.0, StopReason.ATTEMPTS, None)
        response: httpx.Response | None = None if outcome is None or outcome.failed else outcome.result()
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
        if retry_after is not None and retry_after > policy.max_retry_after:
            return _Plan(0.0, StopReason.RETRY_AFTER, retry_after)
        if retry_after is None:
            rate_limited = response is not None and response.status_code == 429
            delay = policy.backoff(attempt - 1, self.rng, rate_limited=rate_limited)
        else:
            delay = retry_after
        if self.monotonic() + delay + policy.min_attempt > call.deadline:
            return _Plan(delay, StopReason.BUDGET, retry_after)
        return _Plan(delay, None, retry_after)

    def _give_up(self, call: _Call, state: tenacity.RetryCallState) -> httpx.Response:
        """Retries ran out: the last answer goes back to ``send``; the last network error becomes ``Unanswered``."""
        call.stopped = self._plan(call, state).stopped
        outcome = state.outcome
        assert outcome is not None and call.stopped is not None
        error = outcome.exception()
        if isinstance(error, httpx.TransportError):
            raise Unanswered(error, call.attempts, call.stopped) from error
        result: httpx.Response = outcome.result()  # re-raises anything else
        return result

    def _note(self, stopped: StopReason, call: _Call) -> str:
        plan = call.plans[call.attempts]
        if stopped is StopReason.RETRY_AFTER and plan.retry_after is not None:
            return f"asked to retry after {plan.retry_after:.0f}s, longer than {self.policy.max_retry_after:.0f}s"
        note = f"gave up after {call.attempts} attempt{'' if call.attempts == 1 else 's'}"
        if stopped is StopReason.BUDGET:
            note += f" within its {self.policy.budget:.0f}s time budget"
        return note

    def _timeout(self, deadline: float) -> httpx.Timeout:
        """The client's timeouts, each cut to the time left in the budget (never below ``min_attempt``)."""
        left = max(deadline - self.monotonic(), self.policy.min_attempt)
        configured = self.client.timeout
        return httpx.Timeout(
            connect=_cut(configured.connect, left),
            read=_cut(configured.read, left),
            write=_cut(configured.write, left),
            pool=_cut(configured.pool, left),
        )

    def _log_retry(self, method: str, path: str, state: tenacity.RetryCallState, delay: float) -> None:
        outcome = state.outcome
        if outcome is None:
            return
        error = outcome.exception()
        reason = describe_error(error) if error is not None else self.describe(outcome.result())
        log.warning(
            "%s API %s %s: %s; retrying in %.2fs (attempt %d of %d)",
            self.name,
            method,
            path,
            self.redact(reason),
            delay,
            state.attempt_number,
            self.policy.max_attempts,
        )
