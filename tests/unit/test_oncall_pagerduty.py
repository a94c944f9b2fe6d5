"""PagerDutyClient against respx: users by email with paging, on-calls by schedule or policy, refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from app.oncall.base import OnCallAuthError, OnCallDataError, OnCallUnavailable
from app.oncall.pagerduty import PagerDutyClient
from tests.fakes.sim_time import SimSleep

BASE = "https://api.pagerduty.com"
TOKEN = "u+pd-unit-token-abcdef"
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
RITA = {"id": "PRITA01", "type": "user", "name": "Rita", "email": "Rita@Example.com"}


def oncall(
    schedule: str | None = "PSCHED1",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    policy: str = "PPOL1",
    level: int = 1,
) -> dict[str, Any]:
    return {
        "escalation_policy": {"id": policy, "type": "escalation_policy_reference", "summary": "Ops policy"},
        "escalation_level": level,
        "schedule": {"id": schedule, "type": "schedule_reference", "summary": "SRE Primary"} if schedule else None,
        "user": {"id": "PRITA01", "type": "user_reference", "summary": "Rita"},
        "start": (start or NOW - timedelta(hours=2)).isoformat() if start is not False else None,
        "end": (end or NOW + timedelta(hours=6)).isoformat() if end is not False else None,
    }


def page(field: str, items: list[Any], *, more: bool = False, offset: int = 0) -> dict[str, Any]:
    return {field: items, "limit": 100, "offset": offset, "more": more, "total": None}


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Callable[..., PagerDutyClient]:
    return lambda base=BASE: PagerDutyClient(TOKEN, base, sleep=sleep)


def test_on_call_for_a_schedule_with_its_window_and_the_api_headers(
    mock: respx.MockRouter, make: Callable[..., PagerDutyClient]
) -> None:
    other = {"id": "PRITA02", "type": "user", "name": "Rita Other", "email": "rita@example.com.au"}
    users = mock.get(f"{BASE}/users").mock(
        side_effect=[
            httpx.Response(200, json=page("users", [other], more=True)),
            httpx.Response(200, json=page("users", [RITA], offset=1)),
        ]
    )
    oncalls = mock.get(f"{BASE}/oncalls").mock(return_value=httpx.Response(200, json=page("oncalls", [oncall()])))
    match = make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)
    assert match is not None
    assert (match.provider, match.schedule, match.schedule_name, match.kind) == (
        "pagerduty",
        "PSCHED1",
        "SRE Primary",
        "schedule",
    )
    assert (match.start, match.end) == (NOW - timedelta(hours=2), NOW + timedelta(hours=6))
    assert users.call_count == 2
    assert users.calls[1].request.url.params["offset"] == "1"
    request = oncalls.calls.last.request
    assert request.headers["Authorization"] == f"Token token={TOKEN}"
    assert request.headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    assert request.url.params.get_list("user_ids[]") == ["PRITA01"]
    assert request.url.params.get_list("schedule_ids[]") == ["PSCHED1"]
    assert request.url.params["earliest"] == "true"


def test_not_on_call_and_unknown_users_are_none(mock: respx.MockRouter, make: Callable[..., PagerDutyClient]) -> None:
    mock.get(f"{BASE}/users").mock(
        side_effect=[httpx.Response(200, json=page("users", [RITA])), httpx.Response(200, json=page("users", []))]
    )
    oncalls = mock.get(f"{BASE}/oncalls").mock(return_value=httpx.Response(200, json=page("oncalls", [])))
    client = make()
    assert client.on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW) is None
    assert client.on_call("nobody@example.com", schedule_ids=["PSCHED1"], at=NOW) is None
    assert oncalls.call_count == 1  # no user, no on-call question


def test_an_entry_of_another_schedule_or_outside_the_window_does_not_count(
    mock: respx.MockRouter, make: Callable[..., PagerDutyClient]
) -> None:
    mock.get(f"{BASE}/users").mock(return_value=httpx.Response(200, json=page("users", [RITA])))
    entries = [oncall("POTHER"), oncall(start=NOW + timedelta(hours=1)), oncall(end=NOW)]
    mock.get(f"{BASE}/oncalls").mock(return_value=httpx.Response(200, json=page("oncalls", entries)))
    assert make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW) is None


def test_escalation_policies_are_asked_apart_and_always_on_call_has_no_window(
    mock: respx.MockRouter, make: Callable[..., PagerDutyClient]
) -> None:
    mock.get(f"{BASE}/users").mock(return_value=httpx.Response(200, json=page("users", [RITA])))
    direct = oncall(None, start=False, end=False, level=2)  # type: ignore[arg-type]
    oncalls = mock.get(f"{BASE}/oncalls").mock(
        side_effect=[httpx.Response(200, json=page("oncalls", [])), httpx.Response(200, json=page("oncalls", [direct]))]
    )
    match = make().on_call("rita@example.com", schedule_ids=["PSCHED1"], escalation_policy_ids=["PPOL1"], at=NOW)
    assert match is not None
    assert (match.kind, match.schedule, match.schedule_name, match.start, match.end, match.escalation_level) == (
        "escalation_policy",
        "PPOL1",
        "Ops policy",
        None,
        None,
        2,
    )
    second = oncalls.calls[1].request.url.params
    assert second.get_list("escalation_policy_ids[]") == ["PPOL1"] and "schedule_ids[]" not in second


def test_the_longest_covering_entry_wins(mock: respx.MockRouter, make: Callable[..., PagerDutyClient]) -> None:
    mock.get(f"{BASE}/users").mock(return_value=httpx.Response(200, json=page("users", [RITA])))
    short, long = oncall(end=NOW + timedelta(hours=1)), oncall(end=NOW + timedelta(days=2))
    mock.get(f"{BASE}/oncalls").mock(return_value=httpx.Response(200, json=page("oncalls", [short, long])))
    match = make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)
    assert match is not None and match.end == NOW + timedelta(days=2)


def test_a_refused_token_is_an_auth_error_without_the_token(
    mock: respx.MockRouter, make: Callable[..., PagerDutyClient]
) -> None:
    mock.get(f"{BASE}/users").mock(
        return_value=httpx.Response(401, json={"error": {"message": f"Unauthorized {TOKEN}", "code": 2006}})
    )
    with pytest.raises(OnCallAuthError) as caught:
        make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)
    assert TOKEN not in caught.value.message and "401" in caught.value.message


def test_429_with_retry_after_is_waited_out(
    mock: respx.MockRouter, make: Callable[..., PagerDutyClient], sleep: SimSleep
) -> None:
    mock.get(f"{BASE}/users").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "Rate Limit Exceeded"}}),
            httpx.Response(200, json=page("users", [RITA])),
        ]
    )
    mock.get(f"{BASE}/oncalls").mock(return_value=httpx.Response(200, json=page("oncalls", [oncall()])))
    assert make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW) is not None
    assert sleep.sleeps == [2.0]


def test_a_long_retry_after_or_lasting_5xx_is_unavailable(
    mock: respx.MockRouter, make: Callable[..., PagerDutyClient], sleep: SimSleep
) -> None:
    users = mock.get(f"{BASE}/users").mock(return_value=httpx.Response(429, headers={"Retry-After": "60"}))
    with pytest.raises(OnCallUnavailable, match="60s"):
        make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)
    assert users.call_count == 1 and sleep.sleeps == []
    users.mock(return_value=httpx.Response(503))
    with pytest.raises(OnCallUnavailable, match="503"):
        make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)
    assert users.call_count == 1 + 3


def test_timeouts_are_unavailable(mock: respx.MockRouter, make: Callable[..., PagerDutyClient]) -> None:
    mock.get(f"{BASE}/users").mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(OnCallUnavailable, match="ReadTimeout"):
        make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)


def test_a_body_without_the_list_is_a_data_error(mock: respx.MockRouter, make: Callable[..., PagerDutyClient]) -> None:
    mock.get(f"{BASE}/users").mock(return_value=httpx.Response(200, json={"user": []}))
    with pytest.raises(OnCallDataError, match="users list"):
        make().on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW)


def test_a_configured_base_url_is_used(mock: respx.MockRouter, make: Callable[..., PagerDutyClient]) -> None:
    users = mock.get("https://pd.internal.example/users").mock(return_value=httpx.Response(200, json=page("users", [])))
    assert make("pd.internal.example/").on_call("rita@example.com", schedule_ids=["PSCHED1"], at=NOW) is None
    assert users.called
