"""app.core.http: the retry policy table, Retry-After, the time budget, jitter and network errors (respx).

Time is simulated: ``SimTime`` is the monotonic clock and the sleep (sleeping moves it), ``NOW`` the wall
clock; nothing really waits and nothing leaves the process.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from app.core.http import (
    RETRY_STATUSES,
    RetryingClient,
    RetryPolicy,
    Sent,
    StopReason,
    Unanswered,
    parse_retry_after,
)

URL = "https://api.example/v1/things"
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, budget=100.0, base=1.0, cap=8.0)


class SimTime:
    """Monotonic seconds that only move when slept on (or told to), recording every sleep."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert type(seconds) is float and seconds >= 0  # a plain float, not tenacity's DoSleep
        self.sleeps.append(seconds)
        self.now += seconds


class TopRng(random.Random):
    """Always the upper bound of ``uniform``: the backoff ceiling itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def sim() -> SimTime:
    return SimTime()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        yield client


def retrying(client: httpx.Client, sim: SimTime, policy: RetryPolicy = POLICY, **options: object) -> RetryingClient:
    options.setdefault("rng", TopRng())
    return RetryingClient(
        client,
        policy,
        name="Test",
        sleep=sim.sleep,
        monotonic=sim,
        clock=lambda: NOW,
        **options,  # type: ignore[arg-type]
    )


# -- which answers are retried ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_retryable_statuses_are_retried(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime, status: int
) -> None:
    route = mock.get(URL).mock(side_effect=[httpx.Response(status), httpx.Response(200, json={"ok": True})])
    sent = retrying(http_client, sim).send("GET", URL)
    assert sent == Sent(sent.response, attempts=2)
    assert sent.response.status_code == 200 and route.call_count == 2
    assert sim.sleeps == [1.0]


@pytest.mark.parametrize("status", [200, 204, 301, 400, 401, 403, 404, 409, 422, 501, 505])
def test_other_statuses_are_final(mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime, status: int) -> None:
    route = mock.get(URL).respond(status)
    sent = retrying(http_client, sim).send("GET", URL)
    assert sent.response.status_code == status and sent.attempts == 1
    assert sent.stopped is None and sent.note == ""
    assert route.call_count == 1 and sim.sleeps == []


def test_the_statuses_retried_are_part_of_the_policy(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    route = mock.get(URL).mock(side_effect=[httpx.Response(409), httpx.Response(503)])
    sent = retrying(http_client, sim, RetryPolicy(retry_statuses=frozenset({409}), base=1.0)).send("GET", URL)
    assert sent.response.status_code == 503 and route.call_count == 2 and sim.sleeps == [1.0]


def test_retries_run_out_after_max_attempts(mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime) -> None:
    route = mock.get(URL).respond(503)
    sent = retrying(http_client, sim).send("GET", URL)
    assert sent.response.status_code == 503 and route.call_count == 4
    assert sent.stopped is StopReason.ATTEMPTS and sent.note == "gave up after 4 attempts"
    assert sim.sleeps == [1.0, 2.0, 4.0]  # doubling from base, no wait after the last attempt


def test_backoff_is_capped(mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime) -> None:
    mock.get(URL).respond(500)
    retrying(http_client, sim, RetryPolicy(max_attempts=7, budget=1000.0, base=1.0, cap=8.0)).send("GET", URL)
    assert sim.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_429_without_retry_after_backs_off_from_the_rate_limited_base(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    policy = RetryPolicy(max_attempts=3, budget=100.0, base=1.0, rate_limited_base=5.0, cap=30.0)
    mock.get(URL).mock(side_effect=[httpx.Response(429), httpx.Response(503), httpx.Response(200)])
    retrying(http_client, sim, policy).send("GET", URL)
    assert sim.sleeps == [5.0, 2.0]  # 429: 5 * 2**0; then a 503: 1 * 2**1


# -- Retry-After -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("7", 7.0),
        ("2.5", 2.5),
        (format_datetime(NOW + timedelta(seconds=12), usegmt=True), 12.0),
        (format_datetime(NOW - timedelta(minutes=5), usegmt=True), 0.0),
        (None, 1.0),  # absent: own backoff
        ("soon", 1.0),
        ("-3", 1.0),
        ("1e3", 1.0),
        ("nan", 1.0),
    ],
    ids=["seconds", "fractional", "http-date", "past-date", "absent", "garbage", "negative", "exponent", "nan"],
)
def test_retry_after_forms(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime, retry_after: str | None, expected: float
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    mock.get(URL).mock(side_effect=[httpx.Response(503, headers=headers), httpx.Response(200)])
    assert retrying(http_client, sim).send("GET", URL).response.status_code == 200
    assert sim.sleeps == [expected]


def test_retry_after_longer_than_allowed_gives_up_at_once(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    route = mock.get(URL).respond(429, headers={"Retry-After": "121"})
    sent = retrying(http_client, sim, RetryPolicy(budget=1000.0, max_retry_after=120.0)).send("GET", URL)
    assert sent.stopped is StopReason.RETRY_AFTER and sent.attempts == 1
    assert sent.note == "asked to retry after 121s, longer than 120s"
    assert route.call_count == 1 and sim.sleeps == []


def test_retry_after_is_not_shortened_to_fit_the_budget(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    route = mock.get(URL).respond(503, headers={"Retry-After": "20"})
    sent = retrying(http_client, sim, RetryPolicy(budget=20.5, max_retry_after=60.0)).send("GET", URL)
    assert sent.stopped is StopReason.BUDGET
    assert sent.note == "gave up after 1 attempt within its 20s time budget"  # 20 s + min_attempt > 20.5 s
    assert route.call_count == 1 and sim.sleeps == []


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after(" 30 ", now) == 30.0
    assert parse_retry_after("Sat, 21 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sat, 21 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("Sat, 21 Nov 2026 12:00:30 -0000", now) is None  # no zone
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-1", now) is None
    assert parse_retry_after("inf", now) is None
    assert parse_retry_after("1_000", now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after(None, now) is None


# -- the time budget ------------------------------------------------------------------------------------------


def test_budget_ends_retries_and_cuts_each_attempts_timeouts(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    """Each attempt hangs until its read timeout: 30 s, then what is left of 45 s after the wait."""
    timeouts: list[dict[str, float]] = []

    def hang(request: httpx.Request) -> httpx.Response:
        timeouts.append(dict(request.extensions["timeout"]))
        sim.now += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("timed out", request=request)

    mock.get(URL).mock(side_effect=hang)
    policy = RetryPolicy(max_attempts=5, budget=45.0, base=1.0)
    with pytest.raises(Unanswered) as caught:
        retrying(http_client, sim, policy).send("GET", URL)
    assert caught.value.attempts == 2 and caught.value.stopped is StopReason.BUDGET
    assert timeouts[0] == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}
    assert timeouts[1] == {"connect": 10.0, "read": 14.0, "write": 14.0, "pool": 14.0}  # 45 - 30 - 1
    assert sim.sleeps == [1.0] and sim.now - 500.0 == 45.0


def test_waits_within_the_budget_are_taken_and_one_that_is_not_ends_the_call(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    route = mock.get(URL).respond(503)
    policy = RetryPolicy(max_attempts=10, budget=10.0, base=1.0, cap=30.0)
    sent = retrying(http_client, sim, policy).send("GET", URL)
    assert sim.sleeps == [1.0, 2.0, 4.0]  # then 8 s would leave less than min_attempt (1 s) of 10 s
    assert route.call_count == 4 and sent.stopped is StopReason.BUDGET
    assert sent.note == "gave up after 4 attempts within its 10s time budget"


# -- jitter ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "floor"), [("equal", 0.5), ("full", 0.0)])
def test_jitter_stays_within_its_bounds(jitter: str, floor: float) -> None:
    policy = RetryPolicy(base=0.5, cap=30.0, jitter=jitter)  # type: ignore[arg-type]
    rng = random.Random(42)
    for retry in range(12):
        ceiling = min(30.0, 0.5 * 2**retry)
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(floor * ceiling <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # really jittered
    first = [policy.backoff(r, random.Random(7)) for r in range(5)]
    assert first == [policy.backoff(r, random.Random(7)) for r in range(5)]  # seeded: reproducible


def test_backoff_of_a_huge_retry_number_is_the_cap() -> None:
    assert RetryPolicy(cap=30.0).backoff(10_000, TopRng()) == 30.0


# -- network errors ------------------------------------------------------------------------------------------


def test_network_errors_are_retried(mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime) -> None:
    mock.get(URL).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("eof"),
            httpx.Response(200),
        ]
    )
    sent = retrying(http_client, sim).send("GET", URL)
    assert sent.response.status_code == 200 and sent.attempts == 4 and sim.sleeps == [1.0, 2.0, 4.0]


def test_network_errors_to_the_end_are_unanswered(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    mock.get(URL).mock(side_effect=httpx.ConnectTimeout("timed out"))
    with pytest.raises(Unanswered) as caught:
        retrying(http_client, sim).send("GET", URL)
    assert caught.value.attempts == 4 and caught.value.stopped is StopReason.ATTEMPTS
    assert isinstance(caught.value.error, httpx.ConnectTimeout) and caught.value.__cause__ is caught.value.error
    assert str(caught.value) == "no answer after 4 attempts (ConnectTimeout: timed out)"


def test_network_errors_are_not_retried_when_the_policy_says_so(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    route = mock.get(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError):
        retrying(http_client, sim, RetryPolicy(retry_network_errors=False)).send("GET", URL)
    assert route.call_count == 1 and sim.sleeps == []


def test_other_httpx_errors_are_raised_at_once(sim: SimTime) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol("bad scheme")

    with httpx.Client(transport=httpx.MockTransport(boom)) as client, pytest.raises(httpx.UnsupportedProtocol):
        retrying(client, sim).send("GET", URL)
    assert sim.sleeps == []


# -- hooks, logs, validation ---------------------------------------------------------------------------------


def test_before_attempt_runs_before_every_attempt(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime
) -> None:
    calls: list[int] = []
    route = mock.get(URL).mock(side_effect=lambda request: httpx.Response(503 if len(calls) < 3 else 200))
    retrying(http_client, sim, before_attempt=lambda: calls.append(route.call_count)).send("GET", URL)
    assert calls == [0, 1, 2]


def test_retries_are_logged_redacted(
    mock: respx.MockRouter, http_client: httpx.Client, sim: SimTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.core.http")
    mock.get(URL).mock(side_effect=[httpx.ConnectError("refused by s3cr3t"), httpx.Response(200)])
    retrying(http_client, sim, redact=lambda text: text.replace("s3cr3t", "***")).send("GET", URL, params={"q": "1"})
    assert caplog.messages == [
        "Test API GET /v1/things: ConnectError: refused by ***; retrying in 1.00s (attempt 1 of 4)"
    ]


@pytest.mark.parametrize(
    "options", [{"max_attempts": 0}, {"budget": 0.0}, {"base": -1.0}, {"cap": -1.0}, {"min_attempt": -1.0}]
)
def test_nonsense_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(**options)  # type: ignore[arg-type]
