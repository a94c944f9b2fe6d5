"""Scheduled access: the pure rules, approval before the start, the lifecycle's start (exactly once, across
processes and restarts), a window that passed unstarted, the "starts soon" reminder, and revoking before the start."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.access import scheduling
from app.access.errors import AlreadyDecided, NotAllowed, SubmissionInvalid
from app.access.lifecycle import Lifecycle
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import TailnetError
from app.tailnet.models import Actor, Device
from tests.unit.access_support import ADMIN, BOB, FlakyTailnet, access_request, kinds, make_config, submit

S = RequestStatus
HOUR = timedelta(hours=1)

# -- pure rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (None, None),
        (timedelta(minutes=-5), "in the past"),
        (timedelta(seconds=-59), None),  # a minute of slack: the picker has minute steps
        (timedelta(minutes=5), None),
        (timedelta(days=30), None),
        (timedelta(days=30, minutes=1), "within 30d"),
    ],
)
def test_start_error(clock: FrozenClock, offset: timedelta | None, expected: str | None) -> None:
    starts_at = None if offset is None else clock() + offset
    error = scheduling.start_error(starts_at, now=clock(), max_ahead=timedelta(days=30))
    assert (error is None) if expected is None else (error is not None and expected in error)


def test_window_rules(clock: FrozenClock) -> None:
    now = clock()
    assert scheduling.chosen_start(None, now) is None
    assert scheduling.chosen_start(now - timedelta(seconds=30), now) is None  # "now": starts on approval
    assert scheduling.chosen_start(now + HOUR, now) == now + HOUR
    # a pending request expires at its window's end at the latest
    assert scheduling.review_deadline(now, timedelta(hours=24), now + HOUR, HOUR) == now + 2 * HOUR
    assert scheduling.review_deadline(now, HOUR, now + 5 * HOUR, HOUR) == now + HOUR
    assert scheduling.review_deadline(now, HOUR, None, HOUR) == now + HOUR
    assert scheduling.starts_later(now + HOUR, now) and not scheduling.starts_later(now, now)
    assert not scheduling.starts_later(None, now)
    assert scheduling.grant_expiry(now - timedelta(minutes=20), HOUR, now) == now + timedelta(minutes=40)
    assert scheduling.grant_expiry(None, HOUR, now) == now + HOUR
    assert scheduling.window_problem(None, now, now) is None
    assert scheduling.window_problem(now - HOUR, now + HOUR, now) is None
    assert "window ended" in (scheduling.window_problem(now - 2 * HOUR, now - HOUR, now) or "")
    assert scheduling.is_missed(now - HOUR, HOUR, now) and not scheduling.is_missed(now - HOUR, 2 * HOUR, now)


@pytest.mark.parametrize(
    ("starts_in", "decided_ago", "expected"),
    [
        (timedelta(minutes=10), timedelta(hours=2), True),
        (timedelta(minutes=11), timedelta(hours=2), False),  # not yet
        (timedelta(0), timedelta(hours=2), False),  # it starts now: the start tells
        (timedelta(minutes=5), timedelta(minutes=1), False),  # approved 6 minutes before: its DM said so
        (timedelta(minutes=5), None, True),
    ],
)
def test_wants_start_reminder(
    clock: FrozenClock, starts_in: timedelta, decided_ago: timedelta | None, expected: bool
) -> None:
    now = clock()
    decided = None if decided_ago is None else now - decided_ago
    assert scheduling.wants_start_reminder(now + starts_in, decided, now, timedelta(minutes=10)) is expected


# -- the flow --------------------------------------------------------------------------------------------


def _life(
    db: Database, tailnet: FlakyTailnet, config: list[Config], clock: FrozenClock, service: AccessService
) -> Lifecycle:
    return Lifecycle(db, tailnet, lambda: config[0], clock=clock, access=service)  # type: ignore[arg-type]


def _audit_actions(db: Database, request_id: int) -> list[str]:
    with db.session() as session:
        return [e.action for e in audit.query(session) if e.target == f"request/{request_id}"]


def test_submit_refuses_a_start_in_the_past_or_too_far_ahead(
    service: AccessService, device: Device, clock: FrozenClock
) -> None:
    for starts_at, words in ((clock() - HOUR, "in the past"), (clock() + timedelta(days=31), "within 30d")):
        with pytest.raises(SubmissionInvalid) as refused:
            submit(service, device, starts_at=starts_at)
        assert words in refused.value.errors["starts_at"]


def test_approved_before_the_start_is_written_at_the_start_until_the_window_end(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    builtin: BuiltinTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    start = clock() + timedelta(hours=3)
    request = submit(service, device, starts_at=start)
    assert request.starts_at == start and request.window_end == start + HOUR
    assert request.timeout_at == clock() + HOUR  # the request timeout (1h) comes before the window's end
    approved = service.approve(request.id, BOB)
    assert approved.status == S.SCHEDULED and approved.decided_by == BOB
    assert tailnet.sets == 0 and "custom:prodAccess" not in builtin.get_attributes(device.id).attributes
    life = _life(db, tailnet, config, clock, service)
    clock.advance(hours=2)  # past the request timeout: a scheduled request does not expire
    assert life.run_all()["request_expired"] == 0
    assert service.get(request.id).status == S.SCHEDULED
    clock.advance(minutes=59, seconds=30)
    assert life.start_scheduled() == 0  # not yet
    clock.advance(seconds=45)  # the scheduler runs 15 s after the start
    assert life.run_all()["started"] == 1
    granted = service.get(request.id)
    assert granted.status == S.GRANTED and granted.expires_at == start + HOUR
    assert builtin.get_attributes(device.id).expiries["custom:prodAccess"] == start + HOUR
    assert tailnet.sets == 1
    assert life.run_all()["started"] == 0
    assert kinds(db, request.id) == ["requested", "scheduled", "granted"]
    assert _audit_actions(db, request.id) == [
        "Access requested",
        "Access approved",
        "Access scheduled",
        "Access granted",
    ]
    clock.advance(minutes=50)  # the expiry reminder still comes (START cleared reminder_sent_at)
    assert life.send_reminders() == 1
    clock.advance(minutes=10)
    assert life.end_expired_grants() == 1


def test_two_lifecycles_racing_write_once_and_a_restart_picks_up(
    service: AccessService,
    device: Device,
    db: Database,
    builtin: BuiltinTailnet,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    devices = [device] + [
        builtin.add_device(name=f"req-box{i}", user="req@example.com", actor=Actor("cli:t")) for i in range(3)
    ]  # one grant each: a second grant of one device's attribute would end the first (an extension)
    requests = [submit(service, d, starts_at=clock() + timedelta(minutes=30)) for d in devices]
    for request in requests:
        service.approve(request.id, BOB)
    clock.advance(minutes=31)
    lives = [_life(db, tailnet, config, clock, service) for _ in range(2)]
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def run(life: Lifecycle) -> None:
        barrier.wait()
        counts.append(life.start_scheduled())

    threads = [threading.Thread(target=run, args=(life,)) for life in lives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 4 and tailnet.sets == 4
    assert all(service.get(r.id).status == S.GRANTED for r in requests)
    assert _life(db, tailnet, config, clock, service).start_scheduled() == 0  # a restart: nothing left


def test_a_start_interrupted_mid_write_is_recovered_with_the_window_end(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    builtin: BuiltinTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    start = clock() + HOUR
    request = submit(service, device, starts_at=start)
    service.approve(request.id, BOB)
    clock.advance(hours=1, seconds=20)
    life = _life(db, tailnet, config, clock, service)

    def killed(request_id: int, actor: str) -> None:  # the process died right after the write
        builtin.set_attribute(device.id, "custom:prodAccess", True, actor=Actor(actor), expiry=start + HOUR)
        raise SystemExit

    starts = scheduling.ScheduledStarts(db, lambda: config[0], killed, clock=clock, actor="system:access")
    with pytest.raises(SystemExit):
        starts.start_due()
    assert service.get(request.id).status == S.GRANTING
    clock.advance(minutes=6)
    assert life.recover_stuck_grants() == 1
    recovered = service.get(request.id)
    assert recovered.status == S.GRANTED and recovered.expires_at == start + HOUR


def test_a_failed_start_is_retryable_until_the_window_end(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    start = clock() + HOUR
    request = submit(service, device, starts_at=start)
    service.approve(request.id, BOB)
    clock.advance(hours=1)
    tailnet.fail_with = TailnetError("the tailnet said no")
    life = _life(db, tailnet, config, clock, service)
    assert life.start_scheduled() == 1
    assert service.get(request.id).status == S.FAILED
    tailnet.fail_with = None
    clock.advance(minutes=20)
    retried = service.retry(request.id, BOB)
    assert retried.status == S.GRANTED and retried.expires_at == start + HOUR  # the window's end, not now + 1h
    assert kinds(db, request.id) == ["requested", "scheduled", "failed", "granted"]


def test_a_retry_after_the_window_end_writes_nothing(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    request = submit(service, device, starts_at=clock() + HOUR)
    service.approve(request.id, BOB)
    clock.advance(hours=1)
    tailnet.fail_with = TailnetError("down")
    _life(db, tailnet, config, clock, service).start_scheduled()
    tailnet.fail_with = None
    clock.advance(hours=1)
    failed = service.retry(request.id, BOB)
    assert failed.status == S.FAILED and "window ended" in (failed.last_error or "")
    assert tailnet.sets == 1  # only the first, refused attempt


def test_a_window_that_passed_unstarted_ends_without_a_write(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    request = submit(service, device, starts_at=clock() + HOUR)
    service.approve(request.id, BOB)
    clock.advance(hours=2)  # the scheduler was down for the whole window
    assert _life(db, tailnet, config, clock, service).run_all()["started"] == 1
    ended = service.get(request.id)
    assert ended.status == S.ENDED and ended.ended_note == scheduling.MISSED_NOTE
    assert tailnet.sets == 0
    assert kinds(db, request.id) == ["requested", "scheduled", "start_missed"]
    assert _audit_actions(db, request.id)[-1] == "Scheduled access missed"


def test_approval_after_the_start_grants_at_once_until_the_window_end(
    service: AccessService, device: Device, clock: FrozenClock
) -> None:
    start = clock() + timedelta(minutes=30)
    request = submit(service, device, starts_at=start)
    clock.advance(minutes=45)
    granted = service.approve(request.id, BOB)
    assert granted.status == S.GRANTED and granted.expires_at == start + HOUR


def test_a_pending_request_expires_at_its_window_end(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    request = submit(service, device, starts_at=clock() + timedelta(minutes=10), duration=timedelta(minutes=30))
    assert request.timeout_at == clock() + timedelta(minutes=40)
    clock.advance(minutes=40)
    assert _life(db, tailnet, config, clock, service).expire_pending() == 1


def test_starts_soon_reminder_once(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    request = submit(service, device, starts_at=clock() + timedelta(minutes=30))
    service.approve(request.id, BOB)
    life = _life(db, tailnet, config, clock, service)
    assert life.remind_scheduled() == 0
    clock.advance(minutes=20)
    assert life.remind_scheduled() == 1
    assert life.remind_scheduled() == 0
    assert _life(db, tailnet, config, clock, service).remind_scheduled() == 0  # restart: still once
    clock.advance(minutes=10)
    life.start_scheduled()
    assert kinds(db, request.id) == ["requested", "scheduled", "starts_soon", "granted"]
    with db.session() as session:
        assert session.scalar(select(AccessRequestRow.reminder_sent_at)) is None


def test_revoke_before_the_start(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    request = submit(service, device, starts_at=clock() + HOUR)
    service.approve(request.id, BOB)
    with pytest.raises(NotAllowed):
        service.revoke(request.id, "UEVE")
    revoked = service.revoke(request.id, ADMIN)
    assert revoked.status == S.REVOKED and revoked.ended_by == ADMIN
    clock.advance(hours=1)
    assert _life(db, tailnet, config, clock, service).start_scheduled() == 0
    assert tailnet.sets == 0
    assert kinds(db, request.id) == ["requested", "scheduled", "revoked"]
    with pytest.raises(AlreadyDecided):
        service.revoke(request.id, ADMIN)


def test_break_glass_refuses_a_start(
    service: AccessService, device: Device, config: list[Config], clock: FrozenClock
) -> None:
    config[0] = make_config(break_glass=True)
    reason = "the database is on fire and I need in"
    with pytest.raises(SubmissionInvalid) as refused:
        submit(service, device, break_glass=True, reason=reason, starts_at=clock() + HOUR)
    assert refused.value.errors == {"starts_at": scheduling.BREAK_GLASS_START}


@pytest.mark.parametrize(
    ("kind", "words"),
    [("scheduled", "approved your"), ("starts_soon", ":alarm_clock:"), ("start_missed", "never started")],
)
def test_scheduled_notices_say_when(clock: FrozenClock, kind: str, words: str) -> None:
    from app.slack.views.request_message import notice, status_line

    start = clock() + timedelta(days=2)
    request = access_request(
        clock(), status=S.SCHEDULED, starts_at=start, decided_by=BOB, approvals=(BOB,), device_name="rita-laptop"
    )
    told = notice(request, kind, "Production")
    assert told is not None
    text, blocks = told
    rendered = str(blocks)
    assert words in rendered and "rita-laptop" in rendered
    assert f"<!date^{int(start.timestamp())}^" in rendered  # the start, in the reader's time zone
    assert f"<!date^{int((start + HOUR).timestamp())}^" in rendered  # the window's end
    assert "<!date" not in text  # the fallback has plain dates
    assert "starts" in status_line(request) and "until" in status_line(request)


def test_the_deciding_vote_of_several_schedules(service: AccessService, device: Device, clock: FrozenClock) -> None:
    from tests.unit.access_support import CAROL, DAVE

    request = submit(
        service, device, profile_id="pair", approver_ids=[CAROL, DAVE], starts_at=clock() + timedelta(hours=2)
    )
    assert service.approve(request.id, CAROL).status == S.PENDING
    scheduled = service.approve(request.id, DAVE)
    assert scheduled.status == S.SCHEDULED and scheduled.approvals == (CAROL, DAVE) and scheduled.decided_by == DAVE
