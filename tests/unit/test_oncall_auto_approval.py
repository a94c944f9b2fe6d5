"""On-call auto-approval in the domain: on call -> granted by the schedule (audited, told after the write); not on
call, a provider that fails, or no credentials -> the request stays with its approvers; races and scheduled starts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from app.access.oncall import OnCallSchedules, decided_by
from app.access.people import StaticDirectory
from app.access.service import AccessService
from app.config.model import Config
from app.config.oncall import AutoApprove
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import RequestStatus
from app.oncall.base import OnCallMatch, OnCallUnavailable
from app.slack.views.auto_approval import approved_by
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Device
from tests.conftest import written
from tests.unit.access_support import BOB, CAROL, EMAILS, FlakyTailnet, access_request, kinds, make_config, submit

PD_RULE = {"pagerduty": {"schedule_ids": ["PSCHED1"]}}


class ScriptedPagerDuty:
    """A PagerDuty lookup that answers what the test says (a match, ``None``, or an error) and records the asks."""

    def __init__(self, answer: Callable[[], OnCallMatch | None]) -> None:
        self.answer = answer
        self.asked: list[tuple[str, tuple[str, ...], datetime]] = []

    def on_call(
        self, email: str, *, schedule_ids: Sequence[str], escalation_policy_ids: Sequence[str], at: datetime
    ) -> OnCallMatch | None:
        self.asked.append((email, tuple(schedule_ids), at))
        return self.answer()


def match(clock: FrozenClock) -> OnCallMatch:
    now = clock()
    return OnCallMatch(
        "pagerduty", "PSCHED1", "SRE Primary", "schedule", now - timedelta(hours=1), now + timedelta(hours=7)
    )


@pytest.fixture
def oncall_config(config: list[Config]) -> list[Config]:
    config[0] = make_config(auto_approve=PD_RULE)
    return config


def make_service(
    db: Database, tailnet: FlakyTailnet, config: list[Config], clock: FrozenClock, **providers: Any
) -> AccessService:
    directory = StaticDirectory(EMAILS, {"sre": {CAROL}})
    oncall = OnCallSchedules(**providers)
    return AccessService(db, tailnet, lambda: config[0], directory, clock=clock, oncall=oncall)  # type: ignore[arg-type]


def audit_of(db: Database, request_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with db.session() as session:
        return [(e.action, e.actor, e.details) for e in audit.query(session) if e.target == f"request/{request_id}"]


def test_a_requester_on_call_is_granted_by_the_schedule(
    db: Database,
    tailnet: FlakyTailnet,
    builtin: BuiltinTailnet,
    device: Device,
    clock: FrozenClock,
    oncall_config: list[Config],
) -> None:
    pagerduty = ScriptedPagerDuty(lambda: match(clock))
    service = make_service(db, tailnet, oncall_config, clock, pagerduty=pagerduty)
    request = submit(service, device)
    assert request.status == RequestStatus.PENDING
    done = service.auto_approve(request.id)
    assert done.status == RequestStatus.GRANTED and done.decided_by == "pagerduty:PSCHED1"
    assert done.expires_at == clock() + timedelta(hours=1)
    assert done.auto_approval is not None and done.auto_approval["schedule_name"] == "SRE Primary"
    attrs = builtin.get_attributes(device.id)
    assert written(attrs) == {"custom:prodAccess": True}
    assert attrs.expiries["custom:prodAccess"] == clock() + timedelta(hours=1)
    assert pagerduty.asked == [("req@example.com", ("PSCHED1",), clock())]
    events = audit_of(db, request.id)
    assert [a for a, _, _ in events] == ["Access requested", "Access auto-approved", "Access granted"]
    _, actor, details = events[1]
    assert actor == "pagerduty:PSCHED1"
    assert details["provider"] == "pagerduty" and details["schedule"] == "PSCHED1"
    assert details["window_end"] == (clock() + timedelta(hours=7)).isoformat()
    assert kinds(db, request.id) == ["requested", "granted"]  # told after the write, once
    assert service.auto_approve(request.id).status == RequestStatus.GRANTED and tailnet.sets == 1


def test_not_on_call_stays_with_the_approvers(
    db: Database, tailnet: FlakyTailnet, device: Device, clock: FrozenClock, oncall_config: list[Config]
) -> None:
    service = make_service(db, tailnet, oncall_config, clock, pagerduty=ScriptedPagerDuty(lambda: None))
    request = submit(service, device)
    assert service.auto_approve(request.id).status == RequestStatus.PENDING
    assert tailnet.sets == 0 and kinds(db, request.id) == ["requested"]
    assert service.approve(request.id, BOB).status == RequestStatus.GRANTED


def test_a_provider_that_is_down_is_the_normal_path_with_a_warning(
    db: Database,
    tailnet: FlakyTailnet,
    device: Device,
    clock: FrozenClock,
    oncall_config: list[Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down() -> OnCallMatch | None:
        raise OnCallUnavailable("PagerDuty API /users answered HTTP 503 Service Unavailable")

    service = make_service(db, tailnet, oncall_config, clock, pagerduty=ScriptedPagerDuty(down))
    request = submit(service, device)
    with caplog.at_level(logging.WARNING):
        assert service.auto_approve(request.id).status == RequestStatus.PENDING
    assert "goes to its approvers" in caplog.text and "503" in caplog.text
    assert tailnet.sets == 0


def test_an_unexpected_lookup_error_is_the_normal_path_too(
    db: Database, tailnet: FlakyTailnet, device: Device, clock: FrozenClock, oncall_config: list[Config]
) -> None:
    def broken() -> OnCallMatch | None:
        raise KeyError("schedule")

    service = make_service(db, tailnet, oncall_config, clock, pagerduty=ScriptedPagerDuty(broken))
    assert service.auto_approve(submit(service, device).id).status == RequestStatus.PENDING


def test_no_token_for_the_provider_is_the_normal_path(
    db: Database,
    tailnet: FlakyTailnet,
    device: Device,
    clock: FrozenClock,
    config: list[Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config[0] = make_config(auto_approve={"opsgenie": {"schedules": ["SRE Primary"]}})
    pagerduty = ScriptedPagerDuty(lambda: match(clock))
    service = make_service(db, tailnet, config, clock, pagerduty=pagerduty)
    with caplog.at_level(logging.WARNING):
        assert service.auto_approve(submit(service, device).id).status == RequestStatus.PENDING
    assert "OPSGENIE_API_KEY is not set" in caplog.text and pagerduty.asked == []
    assert OnCallSchedules(pagerduty=pagerduty).unconfigured(AutoApprove.model_validate(PD_RULE)) == []


def test_profiles_without_auto_approve_never_ask(
    db: Database, tailnet: FlakyTailnet, device: Device, clock: FrozenClock, config: list[Config]
) -> None:
    pagerduty = ScriptedPagerDuty(lambda: match(clock))
    service = make_service(db, tailnet, config, clock, pagerduty=pagerduty)
    assert service.auto_approve(submit(service, device).id).status == RequestStatus.PENDING
    assert pagerduty.asked == []


def test_a_request_decided_meanwhile_is_left_as_it_is(
    db: Database, tailnet: FlakyTailnet, device: Device, clock: FrozenClock, oncall_config: list[Config]
) -> None:
    holder: dict[str, Any] = {}

    def deny_first() -> OnCallMatch | None:
        holder["service"].deny(holder["id"], BOB, "not now")
        return match(clock)

    service = make_service(db, tailnet, oncall_config, clock, pagerduty=ScriptedPagerDuty(deny_first))
    holder.update(service=service, id=submit(service, device).id)
    assert service.auto_approve(holder["id"]).status == RequestStatus.DENIED
    assert tailnet.sets == 0
    assert "Access auto-approved" not in [a for a, _, _ in audit_of(db, holder["id"])]


def test_a_later_start_is_scheduled_like_a_normal_approval(
    db: Database, tailnet: FlakyTailnet, device: Device, clock: FrozenClock, oncall_config: list[Config]
) -> None:
    service = make_service(db, tailnet, oncall_config, clock, pagerduty=ScriptedPagerDuty(lambda: match(clock)))
    request = submit(service, device, starts_at=clock() + timedelta(hours=2))
    done = service.auto_approve(request.id)
    assert done.status == RequestStatus.SCHEDULED and done.decided_by == "pagerduty:PSCHED1"
    assert tailnet.sets == 0
    assert kinds(db, request.id) == ["requested", "scheduled"]
    assert [a for a, _, _ in audit_of(db, request.id)] == ["Access requested", "Access auto-approved"]


def test_decided_by_fits_the_column() -> None:
    long = OnCallMatch("opsgenie", "d875e654-9b4e-4219-a803-0c26936d18de")
    assert decided_by(long) == "opsgenie:d875e654-9b4e-4219-a803"
    assert len(decided_by(long)) == 32


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({}, "auto_approve needs pagerduty or opsgenie"),
        ({"pagerduty": {}}, "at least one of schedule_ids or escalation_policy_ids"),
        ({"pagerduty": {"schedule_ids": ["P 1"]}}, "PagerDuty ids look like"),
        ({"opsgenie": {"schedules": []}}, "at least 1 item"),
        ({"opsgenie": {"schedule": ["x"]}}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_rules_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_config(auto_approve=rule)


def test_approvers_are_told_the_schedule_and_window(clock: FrozenClock) -> None:
    found = match(clock)
    request = access_request(clock(), status=RequestStatus.GRANTED, auto_approval=found.as_json())
    text = approved_by(request, "nobody")
    assert text.startswith("on-call schedule *SRE Primary* (PagerDuty, on call until <!date^")
    unknown = OnCallMatch("opsgenie", "SRE Primary", "SRE Primary")
    text = approved_by(access_request(clock(), auto_approval=unknown.as_json()), "nobody")
    assert text == "on-call schedule *SRE Primary* (Opsgenie, on-call window not told by the provider)"
    assert approved_by(access_request(clock()), "<@UBOB>") == "<@UBOB>"
