"""OpsgenieClient against respx: on-calls by name or id, the window from the timeline, EU URL, refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from app.oncall.base import OnCallAuthError, OnCallError, OnCallUnavailable
from app.oncall.opsgenie import EU_BASE_URL, OpsgenieClient, identifier_type
from tests.fakes.sim_time import SimSleep

BASE = "https://api.opsgenie.com"
KEY = "og-unit-key-0123456789"
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
SCHEDULE_ID = "d875e654-9b4e-4219-a803-0c26936d18de"


def on_calls(*emails: str, name: str = "SRE Primary") -> dict[str, Any]:
    data = {"_parent": {"id": SCHEDULE_ID, "name": name, "enabled": True}, "onCallRecipients": list(emails)}
    return {"data": data, "took": 0.1, "requestId": "r-1"}


def timeline(*periods: tuple[str, datetime, datetime]) -> dict[str, Any]:
    rows = [
        {
            "startDate": start.isoformat().replace("+00:00", "Z"),
            "endDate": end.isoformat().replace("+00:00", "Z"),
            "type": "default",
            "recipient": {"id": "u-1", "type": "user", "name": email},
        }
        for email, start, end in periods
    ]
    rotation = {"id": "rot-1", "name": "Weekly", "order": 1, "periods": rows}
    return {"data": {"_parent": {"id": SCHEDULE_ID}, "finalTimeline": {"rotations": [rotation]}}, "took": 0.1}


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Callable[..., OpsgenieClient]:
    return lambda base=BASE: OpsgenieClient(KEY, base, sleep=sleep)


def test_on_call_by_name_with_the_window_from_the_timeline(
    mock: respx.MockRouter, make: Callable[..., OpsgenieClient]
) -> None:
    who = mock.get(f"{BASE}/v2/schedules/SRE%20Primary/on-calls").mock(
        return_value=httpx.Response(200, json=on_calls("someone@example.com", "Rita@example.com"))
    )
    start, end = NOW - timedelta(hours=3), NOW + timedelta(hours=5)
    periods = [("rita@example.com", start - timedelta(days=1), start), ("rita@example.com", start, end)]
    line = mock.get(f"{BASE}/v2/schedules/SRE%20Primary/timeline").mock(
        return_value=httpx.Response(200, json=timeline(*periods))
    )
    match = make().on_call("rita@example.com", schedules=["SRE Primary"], at=NOW)
    assert match is not None
    assert (match.provider, match.schedule, match.schedule_name, match.start, match.end) == (
        "opsgenie",
        "SRE Primary",
        "SRE Primary",
        start,
        end,
    )
    request = who.calls.last.request
    assert request.headers["Authorization"] == f"GenieKey {KEY}"
    params = request.url.params
    assert (params["scheduleIdentifierType"], params["flat"], params["date"]) == ("name", "true", NOW.isoformat())
    assert line.calls.last.request.url.params["identifierType"] == "name"
    assert line.calls.last.request.url.params["intervalUnit"] == "days"


def test_a_schedule_id_is_asked_as_an_id_and_the_eu_url_is_used(
    mock: respx.MockRouter, make: Callable[..., OpsgenieClient]
) -> None:
    assert identifier_type(SCHEDULE_ID) == "id" and identifier_type("SRE Primary") == "name"
    who = mock.get(f"{EU_BASE_URL}/v2/schedules/{SCHEDULE_ID}/on-calls").mock(
        return_value=httpx.Response(200, json=on_calls("rita@example.com"))
    )
    mock.get(f"{EU_BASE_URL}/v2/schedules/{SCHEDULE_ID}/timeline").mock(
        return_value=httpx.Response(200, json=timeline())
    )
    match = make(EU_BASE_URL).on_call("rita@example.com", schedules=[SCHEDULE_ID], at=NOW)
    assert match is not None and match.schedule_name == "SRE Primary"
    assert (match.start, match.end) == (None, None)  # no period of hers covers now: the window is unknown
    assert who.calls.last.request.url.params["scheduleIdentifierType"] == "id"


def test_not_on_call_asks_every_schedule_and_no_timeline(
    mock: respx.MockRouter, make: Callable[..., OpsgenieClient]
) -> None:
    first = mock.get(f"{BASE}/v2/schedules/A/on-calls").mock(return_value=httpx.Response(200, json=on_calls()))
    second = mock.get(f"{BASE}/v2/schedules/B/on-calls").mock(
        return_value=httpx.Response(200, json=on_calls("bob@example.com"))
    )
    line = mock.get(url__regex=r".*/timeline").mock(return_value=httpx.Response(200, json=timeline()))
    assert make().on_call("rita@example.com", schedules=["A", "B"], at=NOW) is None
    assert first.called and second.called and not line.called


def test_an_unreadable_timeline_leaves_the_window_unknown(
    mock: respx.MockRouter, make: Callable[..., OpsgenieClient]
) -> None:
    mock.get(f"{BASE}/v2/schedules/A/on-calls").mock(
        return_value=httpx.Response(200, json=on_calls("rita@example.com"))
    )
    mock.get(f"{BASE}/v2/schedules/A/timeline").mock(return_value=httpx.Response(500))
    match = make().on_call("rita@example.com", schedules=["A"], at=NOW)
    assert match is not None and (match.start, match.end) == (None, None)


def test_refusals(mock: respx.MockRouter, make: Callable[..., OpsgenieClient], sleep: SimSleep) -> None:
    route = mock.get(f"{BASE}/v2/schedules/A/on-calls")
    route.mock(return_value=httpx.Response(401, json={"message": "Could not authenticate", "took": 0.0}))
    with pytest.raises(OnCallAuthError):
        make().on_call("rita@example.com", schedules=["A"], at=NOW)
    route.mock(return_value=httpx.Response(404, json={"message": "No schedule exists with identifier [A]"}))
    with pytest.raises(OnCallError, match="404"):
        make().on_call("rita@example.com", schedules=["A"], at=NOW)
    throttled = httpx.Response(429, headers={"X-RateLimit-State": "THROTTLED"}, json={"message": "too many"})
    route.mock(side_effect=[throttled, httpx.Response(200, json=on_calls())])
    assert make().on_call("rita@example.com", schedules=["A"], at=NOW) is None
    assert len(sleep.sleeps) == 1  # backed off once without a Retry-After
    route.mock(return_value=throttled)
    with pytest.raises(OnCallUnavailable, match="429"):
        make().on_call("rita@example.com", schedules=["A"], at=NOW)
