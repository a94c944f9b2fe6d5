"""The access state machine: submit, vote, grant exactly once, fail visibly, revoke, lifecycle."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.access.errors import AlreadyDecided, NotAllowed, SubmissionInvalid
from app.access.grants import grant_comment
from app.access.lifecycle import Lifecycle
from app.access.outbox import Outbox
from app.access.people import StaticDirectory
from app.access.service import AccessService
from app.config.model import Config
from app.config.profiles import Profile
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import NotificationRow, RequestStatus
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import TailnetUnavailable
from app.tailnet.models import Actor, Device
from tests.conftest import written
from tests.unit.access_support import (
    ADMIN,
    BOB,
    CAROL,
    DAVE,
    EMAILS,
    REQ,
    FlakyTailnet,
    kinds,
    submit,
)


def test_grant_comment_is_cut_to_200() -> None:
    assert grant_comment("a@x.io", "fix", ["UBOB"]) == "a@x.io via accessbot: fix (approved by UBOB)"
    long = grant_comment("a@x.io", "r" * 500, ["UBOB", "UCAROL"])
    assert len(long) == 200 and long.endswith("(approved by UBOB, UCAROL)")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"approver_ids": [REQ]}, "approver"),
        ({"approver_ids": [DAVE]}, "approver"),
        ({"approver_ids": []}, "approver"),
        ({"duration": timedelta(hours=8)}, "duration"),
        ({"duration": timedelta(minutes=45)}, "duration"),
        ({"device": None}, "device"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"profile_id": "nope"}, "profile"),
    ],
)
def test_submission_errors_name_the_field(
    service: AccessService, device: Device, db: Database, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(SubmissionInvalid) as info:
        submit(service, changes.pop("device", device), **changes)
    assert field in info.value.errors
    with db.session() as s:
        assert s.scalars(select(NotificationRow)).all() == []


def test_group_member_is_an_eligible_approver(service: AccessService, device: Device) -> None:
    request = submit(service, device, approver_ids=[CAROL])
    assert service.approve(request.id, CAROL).status == RequestStatus.GRANTED


def test_approve_grants_with_expiry_after_the_write(
    service: AccessService, device: Device, builtin: BuiltinTailnet, clock: FrozenClock, db: Database
) -> None:
    request = submit(service, device)
    assert request.status == RequestStatus.PENDING
    assert request.timeout_at == clock() + timedelta(hours=1)
    clock.advance(minutes=5)
    granted = service.approve(request.id, BOB)
    assert granted.status == RequestStatus.GRANTED
    assert granted.expires_at == clock() + timedelta(hours=1)
    attrs = builtin.get_attributes(device.id)
    assert written(attrs) == {"custom:prodAccess": True}
    assert attrs.expiries == {"custom:prodAccess": clock() + timedelta(hours=1)}
    assert kinds(db, request.id) == ["requested", "granted"]
    with db.session() as s:
        events = audit.query(s)
    write = next(e for e in events if e.action == "Update node attribute")
    assert write.actor == BOB
    assert write.comment == "req@example.com via accessbot: deploy hotfix (approved by UBOB)"
    assert [e.action for e in events if e.target == f"request/{request.id}"] == [
        "Access requested",
        "Access approved",
        "Access granted",
    ]


def test_non_approver_and_requester_are_refused_and_nothing_is_written(
    service: AccessService, device: Device, tailnet: FlakyTailnet, db: Database
) -> None:
    request = submit(service, device)
    for user in (DAVE, REQ):
        with pytest.raises(NotAllowed):
            service.approve(request.id, user)
    assert tailnet.sets == 0
    assert service.get(request.id).status == RequestStatus.PENDING
    assert service.get(request.id).approvals == ()


def test_second_click_is_refused(service: AccessService, device: Device, tailnet: FlakyTailnet) -> None:
    request = submit(service, device)
    service.approve(request.id, BOB)
    with pytest.raises(AlreadyDecided, match="already approved and granted"):
        service.approve(request.id, BOB)
    assert tailnet.sets == 1


def test_two_of_three(service: AccessService, device: Device, db: Database, tailnet: FlakyTailnet) -> None:
    request = submit(service, device, profile_id="pair", approver_ids=[BOB, CAROL, DAVE])
    after_one = service.approve(request.id, BOB)
    assert after_one.status == RequestStatus.PENDING and after_one.approvals == (BOB,)
    with pytest.raises(AlreadyDecided, match="already approved"):
        service.approve(request.id, BOB)
    assert tailnet.sets == 0
    done = service.approve(request.id, DAVE)
    assert done.status == RequestStatus.GRANTED and done.approvals == (BOB, DAVE)
    assert kinds(db, request.id) == ["requested", "vote_recorded", "granted"]


def test_failed_write_is_kept_retryable_and_not_announced(
    service: AccessService, device: Device, tailnet: FlakyTailnet, db: Database, builtin: BuiltinTailnet
) -> None:
    request = submit(service, device)
    tailnet.fail_with = TailnetUnavailable("tailnet API down (503)")
    failed = service.approve(request.id, BOB)
    assert failed.status == RequestStatus.FAILED
    assert failed.last_error == "tailnet API down (503)"
    assert written(builtin.get_attributes(device.id)) == {}
    assert kinds(db, request.id) == ["requested", "failed"]
    with pytest.raises(NotAllowed):
        service.retry(request.id, DAVE)
    tailnet.fail_with = None
    assert service.retry(request.id, ADMIN).status == RequestStatus.GRANTED
    assert written(builtin.get_attributes(device.id)) == {"custom:prodAccess": True}
    assert kinds(db, request.id) == ["requested", "failed", "granted"]


def test_unexpected_exception_also_leaves_a_failed_request(
    service: AccessService, device: Device, tailnet: FlakyTailnet
) -> None:
    request = submit(service, device)
    tailnet.fail_with = RuntimeError("boom")
    assert service.approve(request.id, BOB).status == RequestStatus.FAILED


def test_deny(service: AccessService, device: Device, db: Database) -> None:
    request = submit(service, device)
    with pytest.raises(NotAllowed):
        service.deny(request.id, DAVE, "no")
    denied = service.deny(request.id, BOB, "not during the freeze")
    assert denied.status == RequestStatus.DENIED and denied.deny_reason == "not during the freeze"
    with pytest.raises(AlreadyDecided, match="denied"):
        service.approve(request.id, BOB)
    assert kinds(db, request.id) == ["requested", "denied"]


def test_revoke(service: AccessService, device: Device, builtin: BuiltinTailnet, db: Database) -> None:
    request = submit(service, device)
    service.approve(request.id, BOB)
    with pytest.raises(NotAllowed):
        service.revoke(request.id, DAVE)
    revoked = service.revoke(request.id, REQ)
    assert revoked.status == RequestStatus.REVOKED
    assert written(builtin.get_attributes(device.id)) == {}
    with pytest.raises(AlreadyDecided):
        service.revoke(request.id, ADMIN)
    assert kinds(db, request.id)[-1] == "revoked"


def test_concurrent_clicks_grant_exactly_once(
    db: Database, device: Device, tailnet: FlakyTailnet, config: list[Config], clock: FrozenClock
) -> None:
    directory = StaticDirectory(EMAILS, {"sre": {CAROL}})
    for _ in range(3):
        request = AccessService(db, tailnet, lambda: config[0], directory, clock=clock).submit(  # type: ignore[arg-type]
            requester_id=REQ,
            profile_id="prod",
            device=device,
            duration=timedelta(hours=1),
            approver_ids=[BOB, CAROL],
            reason="race",
        )
        before = tailnet.sets
        barrier = threading.Barrier(6)
        results: list[str] = []

        def click(
            user: str,
            request_id: int = request.id,
            barrier: threading.Barrier = barrier,
            results: list[str] = results,
        ) -> None:
            service = AccessService(db, tailnet, lambda: config[0], directory, clock=clock)  # type: ignore[arg-type]
            barrier.wait()
            try:
                results.append(service.approve(request_id, user).status)
            except AlreadyDecided:
                results.append("refused")

        threads = [threading.Thread(target=click, args=(u,)) for u in [BOB, CAROL] * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert tailnet.sets - before == 1
        assert results.count(RequestStatus.GRANTED) == 1
        assert results.count("refused") == 5
        assert kinds(db, request.id).count("granted") == 1


def test_extension_supersedes_the_older_grant(service: AccessService, device: Device, clock: FrozenClock) -> None:
    first = submit(service, device)
    service.approve(first.id, BOB)
    clock.advance(minutes=50)
    second = submit(service, device, extends_request_id=first.id)
    service.approve(second.id, BOB)
    assert service.get(first.id).status == RequestStatus.ENDED
    assert service.get(second.id).status == RequestStatus.GRANTED


def test_lifecycle_timeouts_reminders_and_ends(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    life = Lifecycle(db, tailnet, lambda: config[0], clock=clock)  # type: ignore[arg-type]
    stale = submit(service, device)
    granted = submit(service, device)
    service.approve(granted.id, BOB)
    clock.advance(minutes=49)
    assert not any(life.run_all().values())
    clock.advance(minutes=1)
    assert life.send_reminders() == 1
    assert life.send_reminders() == 0
    clock.advance(minutes=10)
    moved = life.run_all()
    assert (moved.pop("request_expired"), moved.pop("ended")) == (1, 1) and not any(moved.values())
    assert not any(life.run_all().values())
    assert service.get(stale.id).status == RequestStatus.EXPIRED
    assert service.get(granted.id).status == RequestStatus.ENDED
    assert kinds(db, granted.id) == ["requested", "granted", "reminder", "ended"]
    assert kinds(db, stale.id) == ["requested", "request_expired"]


def test_recover_interrupted_grants(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
    builtin: BuiltinTailnet,
) -> None:
    from sqlalchemy import update

    from app.db.tables.access import AccessRequestRow

    life = Lifecycle(db, tailnet, lambda: config[0], clock=clock)  # type: ignore[arg-type]
    other = builtin.add_device(name="other", user="req@example.com", actor=Actor("cli:t"))
    # An older grant on `other` expires in 20 minutes: it must not be taken for the interrupted one's write.
    builtin.set_attribute(other.id, "custom:prodAccess", True, actor=Actor(BOB), expiry=clock() + timedelta(minutes=20))
    written = submit(service, device)
    lost = submit(service, other, approver_ids=[CAROL])
    with db.session() as s:  # both were killed mid-grant: one after its write, one before
        s.execute(update(AccessRequestRow).values(status="granting", granting_since=clock()))
    clock.advance(seconds=2)
    builtin.set_attribute(device.id, "custom:prodAccess", True, actor=Actor(BOB), expiry=clock() + timedelta(hours=1))
    assert life.recover_stuck_grants() == 0  # too fresh: the grant may still be in flight
    clock.advance(minutes=6)
    assert life.recover_stuck_grants() == 2
    assert service.get(written.id).status == RequestStatus.GRANTED
    assert service.get(written.id).expires_at == clock() - timedelta(minutes=6) + timedelta(hours=1)
    assert service.get(lost.id).status == RequestStatus.FAILED
    assert service.retry(lost.id, ADMIN).status == RequestStatus.GRANTED
    assert builtin.get_attributes(other.id).expiries["custom:prodAccess"] == clock() + timedelta(hours=1)


def test_outbox_claims_once_and_retries_after_failure(
    service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    outbox = Outbox(db, clock=clock)
    request = submit(service, device)
    first = outbox.claim()
    assert [n.kind for n in first] == ["requested"]
    assert outbox.claim() == []  # leased
    outbox.failed(first[0], "slack down")
    assert outbox.claim() == []
    clock.advance(seconds=16)
    again = outbox.claim()
    assert [(n.id, n.attempts) for n in again] == [(first[0].id, 2)]
    outbox.done(again[0])
    clock.advance(hours=2)
    assert outbox.claim() == []
    outbox.remember(request.id, "approver:UBOB", "DBOB", "1.0001")
    assert [m.ts for m in outbox.messages(request.id)] == ["1.0001"]


def test_profile_validation() -> None:
    with pytest.raises(ValueError, match="approvals_required"):
        Profile.model_validate(
            {
                "id": "x",
                "attribute": "custom:x",
                "max_duration": "1h",
                "approvers": ["a@example.com"],
                "approvals_required": 2,
            }
        )
    with pytest.raises(ValueError, match="within max_duration"):
        Profile.model_validate(
            {
                "id": "x",
                "attribute": "custom:x",
                "max_duration": "10m",
                "durations": ["1h"],
                "approvers": ["a@example.com"],
            }
        )
    profile = Profile.model_validate(
        {"id": "x", "attribute": "custom:x", "max_duration": "2h", "approvers": ["a@example.com"]}
    )
    assert [int(d.total_seconds() // 60) for d in profile.offered_durations] == [30, 60, 120]
