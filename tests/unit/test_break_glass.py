"""Break-glass: profile validation, the form checks, the grant at once, the review exactly once and its reminders,
and how Slack renders them (pure view builders)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from app.access import break_glass, identity
from app.access.errors import AlreadyDecided, NotAllowed, SubmissionInvalid
from app.access.lifecycle import Lifecycle
from app.access.read_model import AccessAudit
from app.access.service import AccessService
from app.config.model import Config
from app.config.profiles import Profile
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.slack.ids import ActionId, BlockId
from app.slack.views import break_glass as views
from app.slack.views.request_message import Audience, channel_post, notice, request_message
from app.slack.views.request_modal import RequestDraft, read_form, request_modal
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import TailnetUnavailable
from app.tailnet.models import Device
from tests.conftest import written
from tests.unit.access_support import BOB, CAROL, DAVE, REQ, FlakyTailnet, access_request, kinds, make_config, submit

REASON = "primary database is down, failover needed now"


def profile(**changes: Any) -> Profile:
    base: dict[str, Any] = {
        "id": "prod",
        "attribute": "custom:prodAccess",
        "max_duration": "4h",
        "durations": ["30m", "1h", "4h"],
        "approvers": ["bob@example.com"],
        "break_glass": True,
    }
    return Profile.model_validate({**base, **changes})


# -- the profile ----------------------------------------------------------------------------------------------


def test_break_glass_is_off_by_default_and_capped_at_one_hour() -> None:
    plain = profile(break_glass=False)
    assert plain.break_glass is False
    on = profile()
    assert on.break_glass_cap == timedelta(hours=1) and on.break_glass_min_reason == 20
    assert on.break_glass_durations == (timedelta(minutes=30), timedelta(hours=1))


def test_the_default_cap_never_exceeds_max_duration() -> None:
    short = profile(max_duration="30m", durations=["15m", "30m"])
    assert short.break_glass_cap == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"break_glass_max_duration": "8h"}, "break_glass_max_duration 8h is longer than max_duration 4h"),
        ({"break_glass_max_duration": "10m"}, "no duration in durations is within break_glass_max_duration 10m"),
        ({"break_glass_max_duration": 0}, "break_glass_max_duration must be longer than zero"),
        ({"break_glass_min_reason": 0}, "greater than or equal to 1"),
        ({"break_glass_min_reason": 201}, "less than or equal to 200"),
    ],
)
def test_invalid_break_glass_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        profile(**changes)
    assert message in str(info.value)


def test_break_glass_settings_are_ignored_while_it_is_off() -> None:
    assert profile(break_glass=False, break_glass_max_duration="10m").break_glass is False


def test_the_review_period_is_a_config_duration() -> None:
    config = Config.model_validate({"break_glass_review_every": "12h"})
    assert config.break_glass_review_every == timedelta(hours=12)
    assert Config().break_glass_review_every == timedelta(days=1)


# -- the form checks (pure) -----------------------------------------------------------------------------------


def test_break_glass_needs_no_approver_but_a_long_reason_and_a_short_duration() -> None:
    checked = break_glass.submission_errors(
        profile(), {"approver": "Choose who should approve."}, duration=timedelta(hours=4), reason="  too short  "
    )
    assert set(checked) == {"duration", "reason"}
    assert "at most 1h" in checked["duration"] and "untick break glass" in checked["duration"]
    assert "at least 20 characters (this one has 9)" in checked["reason"]
    assert break_glass.submission_errors(profile(), {}, duration=timedelta(hours=1), reason=REASON) == {}


def test_break_glass_on_a_profile_without_it_is_refused() -> None:
    checked = break_glass.submission_errors(profile(break_glass=False), {}, duration=timedelta(hours=1), reason=REASON)
    assert checked == {"break_glass": "prod has no break-glass; untick it to ask for approval."}


def test_ordinary_field_errors_stay() -> None:
    errors = {"device": "That device is no longer in the tailnet.", "reason": "Say why you need access."}
    assert break_glass.submission_errors(profile(), errors, duration=timedelta(hours=1), reason="") == errors


# -- the service ----------------------------------------------------------------------------------------------


@pytest.fixture
def glass_config(config: list[Config]) -> list[Config]:
    config[0] = make_config(break_glass=True, break_glass_min_reason=20)
    return config


def audit_actions(db: Database, request_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with db.session() as session:
        return [(e.action, e.actor, e.details) for e in audit.query(session) if e.target == f"request/{request_id}"]


def test_break_glass_grants_at_once_with_the_capped_expiry(
    service: AccessService,
    device: Device,
    builtin: BuiltinTailnet,
    clock: FrozenClock,
    db: Database,
    glass_config: list[Config],
) -> None:
    request = submit(service, device, approver_ids=[], reason=REASON, break_glass=True)
    assert request.status == RequestStatus.GRANTED and request.break_glass
    assert request.expires_at == clock() + timedelta(hours=1)
    attrs = builtin.get_attributes(device.id)
    assert written(attrs) == {"custom:prodAccess": True}
    assert attrs.expiries["custom:prodAccess"] == clock() + timedelta(hours=1)
    with db.session() as session:
        write = next(e for e in audit.query(session) if e.action == "Update node attribute")
    assert (write.actor, write.comment) == (
        REQ,
        f"req@example.com via accessbot: {REASON} (approved by UREQ via break glass)",
    )
    assert set(request.approver_ids) == {BOB, CAROL}  # every approver of the profile is told
    assert kinds(db, request.id) == ["granted"]  # announced once, after the write
    actions = audit_actions(db, request.id)
    assert [a for a, _, _ in actions] == [AccessAudit.BREAK_GLASS, AccessAudit.GRANTED]
    assert actions[0][1] == REQ and actions[0][2]["reason"] == REASON


def test_break_glass_over_the_cap_or_with_a_short_reason_stores_nothing(
    service: AccessService, device: Device, db: Database, glass_config: list[Config], tailnet: FlakyTailnet
) -> None:
    with pytest.raises(SubmissionInvalid) as info:
        submit(service, device, duration=timedelta(hours=4), reason="db down", approver_ids=[], break_glass=True)
    assert set(info.value.errors) == {"duration", "reason"}
    with db.session() as session:
        assert session.scalars(select(AccessRequestRow)).all() == []
    assert tailnet.sets == 0


def test_a_failed_break_glass_write_is_a_failed_request_announced_to_the_approvers(
    service: AccessService, device: Device, db: Database, glass_config: list[Config], tailnet: FlakyTailnet
) -> None:
    tailnet.fail_with = TailnetUnavailable("tailnet down")
    request = submit(service, device, approver_ids=[], reason=REASON, break_glass=True)
    assert request.status == RequestStatus.FAILED
    assert kinds(db, request.id) == ["failed"]


def test_a_break_glass_grant_interrupted_before_its_write_is_settled_by_the_lifecycle(
    service: AccessService,
    device: Device,
    db: Database,
    clock: FrozenClock,
    glass_config: list[Config],
    tailnet: FlakyTailnet,
) -> None:
    """The process died between ``granting`` and the write: recovery fails it visibly (never a silent grant)."""
    with db.session() as session:
        row = AccessRequestRow(
            status=RequestStatus.PENDING,
            requester_id=REQ,
            profile_id="prod",
            attribute="custom:prodAccess",
            value=True,
            approvals_required=1,
            device_id=device.id,
            device_name=device.name,
            duration_seconds=3600,
            reason=REASON,
            approver_ids=[BOB, CAROL],
            created_at=clock(),
            timeout_at=clock() + timedelta(hours=1),
        )
        session.add(row)
        session.flush()
        request_id = break_glass.start(session, row, at=clock())
    assert service.get(request_id).status == RequestStatus.GRANTING
    life = Lifecycle(db, tailnet, lambda: glass_config[0], clock=clock)  # type: ignore[arg-type]
    clock.advance(minutes=6)
    assert life.recover_stuck_grants() == 1
    request = service.get(request_id)
    assert request.status == RequestStatus.FAILED and request.break_glass
    assert kinds(db, request_id) == ["failed"]  # the notifier tells every approver (they may retry)
    assert break_glass.unreviewed(db)[1] == 1


def test_mark_reviewed_by_an_approver_once_never_by_the_requester_or_an_outsider(
    service: AccessService, device: Device, db: Database, clock: FrozenClock, glass_config: list[Config]
) -> None:
    request = submit(service, device, approver_ids=[], reason=REASON, break_glass=True)
    with pytest.raises(NotAllowed, match="your own break-glass"):
        service.mark_reviewed(request.id, REQ)
    with pytest.raises(NotAllowed, match="Only the approvers"):
        service.mark_reviewed(request.id, DAVE)
    reviewed = service.mark_reviewed(request.id, CAROL)
    assert (reviewed.reviewed_by, reviewed.reviewed_at) == (CAROL, clock())
    with pytest.raises(AlreadyDecided, match="already reviewed by <@UCAROL>"):
        service.mark_reviewed(request.id, BOB)
    assert kinds(db, request.id) == ["granted", "break_glass_reviewed"]
    assert [a for a, _, _ in audit_actions(db, request.id)][-1] == AccessAudit.BREAK_GLASS_REVIEWED


def test_the_requester_under_another_slack_account_cannot_review(
    service: AccessService, device: Device, db: Database, clock: FrozenClock, glass_config: list[Config]
) -> None:
    """Identity binding: Carol's Slack account linked to the requester's Tailscale login is the requester."""
    request = submit(service, device, approver_ids=[], reason=REASON, break_glass=True)
    requester_login = service.get(request.id).requester_login
    assert requester_login
    identity.link(db, CAROL, requester_login, by="cli:t", at=clock())
    with pytest.raises(NotAllowed, match="your own break-glass"):
        service.mark_reviewed(request.id, CAROL)
    identity.unlink(db, CAROL, by="cli:t", at=clock())
    assert service.mark_reviewed(request.id, CAROL).reviewed_by == CAROL


def test_an_ordinary_request_cannot_be_marked_reviewed(
    service: AccessService, device: Device, glass_config: list[Config]
) -> None:
    request = submit(service, device)
    service.approve(request.id, BOB)
    with pytest.raises(NotAllowed, match="not a break-glass grant"):
        service.mark_reviewed(request.id, BOB)


def test_unreviewed_ones_are_listed_and_reminded_once_per_period(
    service: AccessService, device: Device, db: Database, clock: FrozenClock, glass_config: list[Config]
) -> None:
    request = submit(service, device, approver_ids=[], reason=REASON, break_glass=True)
    other = submit(service, device, approver_ids=[], reason=REASON + " again", break_glass=True)
    listed, total = break_glass.unreviewed(db)
    assert [r.id for r in listed] == [request.id, other.id] and total == 2
    assert [r.id for r in break_glass.reviewable_by(listed, BOB)] == [request.id, other.id]
    assert break_glass.reviewable_by(listed, REQ) == []
    day = timedelta(days=1)
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 0
    clock.advance(hours=23)
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 0
    clock.advance(hours=1)
    service.mark_reviewed(other.id, BOB)
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 1
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 0  # once per period
    clock.advance(hours=23)
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 0
    clock.advance(hours=1)
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 1
    assert kinds(db, request.id) == ["granted", "break_glass_review_due", "break_glass_review_due"]
    service.mark_reviewed(request.id, BOB)
    clock.advance(days=2)
    assert break_glass.remind_unreviewed(db, now=clock(), every=day) == 0
    assert break_glass.unreviewed(db) == ([], 0)


# -- the views ------------------------------------------------------------------------------------------------


def granted_glass(clock: FrozenClock, **changes: Any) -> Any:
    fields: dict[str, Any] = {
        "status": RequestStatus.GRANTED,
        "break_glass": True,
        "reason": REASON,
        "approver_ids": (BOB, CAROL),
        "decided_at": clock(),
        "decided_by": REQ,
        "granted_at": clock(),
        "expires_at": clock() + timedelta(hours=1),
    }
    fields.update(changes)
    return access_request(clock(), **fields)


def test_approver_copy_has_mark_reviewed_until_it_is_reviewed(clock: FrozenClock) -> None:
    request = granted_glass(clock)
    _, blocks = request_message(request, audience=Audience.APPROVER, profile_label="Production")
    text = json.dumps(blocks)
    assert ActionId.MARK_REVIEWED in text and "without approval" in text and "not reviewed yet" in text
    _, requester_blocks = request_message(request, audience=Audience.REQUESTER, profile_label="Production")
    assert ActionId.MARK_REVIEWED not in json.dumps(requester_blocks)
    done = granted_glass(clock, reviewed_at=clock(), reviewed_by=CAROL)
    _, blocks = request_message(done, audience=Audience.APPROVER, profile_label="Production")
    assert ActionId.MARK_REVIEWED not in json.dumps(blocks) and "reviewed by <@UCAROL>" in json.dumps(blocks)


def test_channel_post_and_notices_say_break_glass(clock: FrozenClock) -> None:
    request = granted_glass(clock)
    text, _ = channel_post(request, "Production")
    assert "Break glass" in text and "without approval" in text and REASON in text
    reviewed = notice(request, "break_glass_reviewed", "Production", {"by": CAROL})
    assert reviewed is not None and "<@UCAROL> reviewed your break-glass" in reviewed[0]
    _, reminder_blocks = views.reminder(request, "Production")
    assert ActionId.MARK_REVIEWED in json.dumps(reminder_blocks)


def test_status_and_home_lists_stay_small(clock: FrozenClock) -> None:
    many = [granted_glass(clock, id=i) for i in range(1, 40)]
    status = views.unreviewed_blocks(many[:20], 39, lambda p: p)
    listed = status[1]["text"]["text"].split("\n")
    assert len(status) == 2 and len(listed[0]) < 3000 and listed[-1] == f"…and {39 - (len(listed) - 1)} more"
    assert len(status[1]["text"]["text"]) <= 3000
    home = views.home_blocks(many, lambda p: p)
    assert len(home) == 3 and len(home[2]["elements"]) == views.HOME_BUTTONS
    assert views.unreviewed_blocks([], 0, lambda p: p) == [] and views.home_blocks([], lambda p: p) == []


def test_the_modal_offers_break_glass_and_caps_the_durations_when_ticked() -> None:
    glass = profile()
    view = request_modal(profiles=[glass], selected=glass, approvers=[(BOB, "Bob")], draft=RequestDraft("prod"))
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks[BlockId.BREAK_GLASS]["dispatch_action"] is True
    assert blocks[BlockId.APPROVER]["optional"] is True  # break glass needs no approver
    assert len(blocks[BlockId.DURATION]["element"]["options"]) == 3
    ticked = request_modal(
        profiles=[glass], selected=glass, approvers=[(BOB, "Bob")], draft=RequestDraft("prod", break_glass=True)
    )
    blocks = {b.get("block_id"): b for b in ticked["blocks"]}
    assert [o["value"] for o in blocks[BlockId.DURATION]["element"]["options"]] == ["1800", "3600"]
    assert blocks[BlockId.BREAK_GLASS]["element"]["initial_options"]
    plain = profile(break_glass=False)
    view = request_modal(profiles=[plain], selected=plain, approvers=[(BOB, "Bob")], draft=RequestDraft("prod"))
    assert BlockId.BREAK_GLASS not in {b.get("block_id") for b in view["blocks"]}


def test_read_form_reads_the_checkbox() -> None:
    state = {
        BlockId.BREAK_GLASS: {
            ActionId.BREAK_GLASS_TOGGLE: {"type": "checkboxes", "selected_options": [{"value": "break_glass"}]}
        }
    }
    assert read_form(state).break_glass is True
    assert read_form({}).break_glass is False
