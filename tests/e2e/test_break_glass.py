"""End to end: break glass through signed Slack payloads, the real Bolt app, the outbox and the lifecycle.

The requester ticks "Break glass" in the modal (the durations shrink to the cap), submits without an approver,
and the attribute is written at once with the capped expiry; only then are every approver (DMs with "Mark
reviewed"), the notify channel and the requester told. An approver marks it reviewed exactly once; the requester
and outsiders are refused. Unreviewed grants are listed in ``/posture status`` and App Home and reminded once per
period. The same grant through the Tailscale adapter (the built-in tailnet's Tailscale API on a loopback port).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.access.people import StaticDirectory
from app.access.read_model import AccessAudit
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.slack.ids import ActionId, BlockId
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from tests.conftest import written
from tests.e2e.conftest import ADMIN, BOB, CAROL, CONFIG_YAML, EVE, REQUESTER, AppUnderTest
from tests.e2e.test_access_flow import click, form_state, open_modal, submit
from tests.fakes.slack_payloads import app_home_opened, block_actions_in_view, option, slash_command
from tests.integration.vendor_contract import tailscale_remote

ATTRIBUTE = "custom:glassAccess"
REASON = "primary database is down and paging nobody answers"
GLASS_PROFILE = """
  - id: glass
    description: Emergency production
    attribute: custom:glassAccess
    max_duration: 4h
    durations: [30m, 1h, 4h]
    approvers: [bob@example.com, "@sre"]
    notify_channel: CACCESS
    break_glass: true
    break_glass_max_duration: 1h
    break_glass_min_reason: 20
"""


def with_glass(app: AppUnderTest) -> None:
    """The e2e config plus a break-glass profile (the config file is re-read on change)."""
    app.config_path.write_text(CONFIG_YAML.rstrip() + "\n" + GLASS_PROFILE)


def glass_state(app: AppUnderTest, *, duration: int = 3600, reason: str = REASON) -> dict[str, Any]:
    """The modal's state for a break-glass submission: the box ticked, no approver chosen."""
    state = form_state(app, profile="glass", duration=duration, reason=reason)
    state.pop(BlockId.APPROVER)
    state[BlockId.BREAK_GLASS] = {
        ActionId.BREAK_GLASS_TOGGLE: {"type": "checkboxes", "selected_options": [option("break_glass")]}
    }
    return state


def break_glass(app: AppUnderTest) -> int:
    with_glass(app)
    view = open_modal(app, profile="glass")
    response = submit(app, view, glass_state(app))
    assert response.status_code == 200 and not response.text, response.text
    with app.ctx.db.session() as session:
        [request_id] = session.scalars(select(AccessRequestRow.id))
    return request_id


def posts_to(app: AppUnderTest, channel: str) -> list[Any]:
    return [c for c in app.fake.calls("chat.postMessage") if c.response.get("channel") == channel]


def dm(app: AppUnderTest, user: str, request_id: int) -> tuple[str, str]:
    """(channel, ts) of the request's message in ``user``'s DM (the one with the request's buttons)."""
    call = next(c for c in posts_to(app, f"D{user}") if f"request_actions:{request_id}" in json.dumps(c.params))
    return call.response["channel"], call.response["ts"]


def refusals(app: AppUnderTest) -> list[tuple[str, str]]:
    return [(c.params["user"], c.params["text"]) for c in app.fake.calls("chat.postEphemeral")]


def test_ticking_break_glass_caps_the_durations_and_the_form_says_what_is_wrong(app_server: AppUnderTest) -> None:
    app = app_server
    with_glass(app)
    view = open_modal(app, profile="glass")
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert "Break glass" in json.dumps(blocks[BlockId.BREAK_GLASS]) and blocks[BlockId.APPROVER]["optional"]
    assert len(blocks[BlockId.DURATION]["element"]["options"]) == 3
    ticked = block_actions_in_view(
        ActionId.BREAK_GLASS_TOGGLE,
        BlockId.BREAK_GLASS,
        REQUESTER,
        action_type="checkboxes",
        action_fields={"selected_options": [option("break_glass")]},
        view=view,
        state_values=form_state(app, profile="glass"),
    )
    assert app.slack.post(ticked).status_code == 200
    refreshed = {b.get("block_id"): b for b in app.fake.view(view["id"])["blocks"]}
    assert [o["value"] for o in refreshed[BlockId.DURATION]["element"]["options"]] == ["1800", "3600"]

    response = submit(app, view, glass_state(app, duration=4 * 3600, reason="db down"))
    errors = response.json()["errors"]
    assert "at most 1h" in errors[BlockId.DURATION] and "at least 20 characters" in errors[BlockId.REASON]
    assert app.tailnet.writes == [] and app.fake.calls("chat.postMessage") == []


def test_break_glass_writes_at_once_then_tells_every_approver_the_channel_and_the_requester(
    app_server: AppUnderTest,
) -> None:
    app = app_server
    laptop = app.devices["laptop"]
    before = app.clock()
    request_id = break_glass(app)
    attrs = app.builtin.get_attributes(laptop.id)
    assert written(attrs) == {ATTRIBUTE: True}
    assert attrs.expiries[ATTRIBUTE] == before + timedelta(hours=1)  # the break-glass cap
    request = app.ctx.access.get(request_id)
    assert request.status == RequestStatus.GRANTED and request.break_glass
    [(written_at, _, _)] = app.tailnet.writes
    for approver in (BOB, CAROL):
        [message] = [c for c in posts_to(app, f"D{approver}") if ActionId.MARK_REVIEWED in json.dumps(c.params)]
        assert message.at > written_at and REASON in json.dumps(message.params["blocks"])
    [announcement] = posts_to(app, "CACCESS")
    assert announcement.at > written_at and "Break glass" in announcement.params["text"]
    requester = posts_to(app, f"D{REQUESTER}")
    assert requester and all(c.at > written_at for c in requester)
    assert any("granted until" in c.params["text"] for c in requester)
    with app.ctx.db.session() as session:
        events = [e for e in audit.query(session) if e.target == f"request/{request_id}"]
    assert [e.action for e in events] == [AccessAudit.BREAK_GLASS, AccessAudit.GRANTED]
    assert events[0].actor == REQUESTER and events[0].details["reason"] == REASON


def test_mark_reviewed_works_once_for_an_approver_and_never_for_the_requester_or_an_outsider(
    app_server: AppUnderTest,
) -> None:
    app = app_server
    request_id = break_glass(app)
    channel, ts = dm(app, CAROL, request_id)
    for who in (REQUESTER, EVE):
        assert click(app, ActionId.MARK_REVIEWED, request_id, who, channel, ts).status_code == 200
    assert [u for u, _ in refusals(app)] == [REQUESTER, EVE]
    assert "your own break-glass" in refusals(app)[0][1] and "Only the approvers" in refusals(app)[1][1]
    assert app.ctx.access.get(request_id).reviewed_at is None

    assert click(app, ActionId.MARK_REVIEWED, request_id, CAROL, channel, ts).status_code == 200
    request = app.ctx.access.get(request_id)
    assert (request.reviewed_by, request.reviewed_at) == (CAROL, app.clock())
    for approver in (BOB, CAROL):
        a_channel, a_ts = dm(app, approver, request_id)
        shown = json.dumps(app.fake.message(a_channel, a_ts)["blocks"])
        assert "reviewed by <@UCAROL>" in shown and ActionId.MARK_REVIEWED not in shown
    assert any("reviewed your break-glass" in c.params["text"] for c in posts_to(app, f"D{REQUESTER}"))

    bob_channel, bob_ts = dm(app, BOB, request_id)
    click(app, ActionId.MARK_REVIEWED, request_id, BOB, bob_channel, bob_ts)
    assert refusals(app)[-1] == (BOB, f"Request {request_id} was already reviewed by <@UCAROL>.")
    with app.ctx.db.session() as session:
        reviews = [e for e in audit.query(session) if e.action == AccessAudit.BREAK_GLASS_REVIEWED]
    assert [(e.actor, e.target) for e in reviews] == [(CAROL, f"request/{request_id}")]


def test_unreviewed_break_glass_is_listed_and_reminded_once_per_period(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = break_glass(app)
    url = app.fake.response_url_for("status")
    status = app.slack.post(slash_command("/posture", "status", ADMIN, "CADMIN", url)).json()
    assert "1 break-glass grant(s) not reviewed yet" in status["text"]
    assert "Break glass not reviewed (1)" in json.dumps(status["blocks"]) and REASON in json.dumps(status["blocks"])
    assert app.slack.post(app_home_opened(BOB)).status_code == 200
    home = json.dumps(app.fake.home_view(BOB))
    assert "Break glass to review" in home and ActionId.MARK_REVIEWED in home
    assert app.slack.post(app_home_opened(REQUESTER)).status_code == 200
    assert "Break glass to review" not in json.dumps(app.fake.home_view(REQUESTER))

    def reminders() -> list[Any]:
        return [c for c in app.fake.calls("chat.postMessage") if "not reviewed yet" in c.params.get("text", "")]

    def cycle() -> int:
        moved = app.ctx.lifecycle.run_all()["review_reminded"]
        app.ctx.notifier.deliver()
        return moved

    app.clock.advance(hours=23)
    assert cycle() == 0 and reminders() == []
    app.clock.advance(hours=1)
    assert cycle() == 1
    assert sorted(c.response["channel"] for c in reminders()) == [f"D{BOB}", f"D{CAROL}"]
    assert cycle() == 0 and len(reminders()) == 2  # once per period
    app.clock.advance(days=1)
    assert cycle() == 1 and len(reminders()) == 4

    [bob_reminder, *_] = [c for c in reminders() if c.response["channel"] == f"D{BOB}"]
    click(app, ActionId.MARK_REVIEWED, request_id, BOB, bob_reminder.response["channel"], bob_reminder.response["ts"])
    assert app.ctx.access.get(request_id).reviewed_by == BOB
    app.clock.advance(days=2)
    assert cycle() == 0
    status = app.slack.post(slash_command("/posture", "status", ADMIN, "CADMIN", url)).json()
    assert "Break glass not reviewed" not in json.dumps(status["blocks"])


def test_break_glass_through_the_tailscale_adapter(db: Database, clock: FrozenClock) -> None:
    builtin = BuiltinTailnet(db, clock=clock)
    device = builtin.add_device(name="rita-laptop", user="req@example.com", os="macos", actor=Actor("cli:t"))
    profile = {
        "id": "glass",
        "attribute": ATTRIBUTE,
        "max_duration": "4h",
        "durations": ["30m", "1h", "4h"],
        "approvers": ["bob@example.com"],
        "break_glass": True,
        "break_glass_max_duration": "30m",
    }
    config = Config.model_validate({"profiles": [profile]})
    directory = StaticDirectory({REQUESTER: "req@example.com", BOB: "bob@example.com"}, {})
    with tailscale_remote(db, builtin, clock) as remote:
        service = AccessService(db, remote, lambda: config, directory, clock=clock)
        request = service.submit(
            requester_id=REQUESTER,
            profile_id="glass",
            device=remote.get_device(device.id),
            duration=timedelta(minutes=30),
            approver_ids=[],
            reason=REASON,
            break_glass=True,
        )
        assert request.status == RequestStatus.GRANTED and request.approver_ids == (BOB,)
        assert builtin.get_attributes(device.id).expiries[ATTRIBUTE] == clock() + timedelta(minutes=30)
        assert service.mark_reviewed(request.id, BOB).reviewed_by == BOB
        assert service.revoke(request.id, REQUESTER).status == RequestStatus.REVOKED
        assert ATTRIBUTE not in written(builtin.get_attributes(device.id))


def test_an_approver_marks_it_reviewed_from_app_home(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = break_glass(app)
    assert app.slack.post(app_home_opened(CAROL)).status_code == 200
    home = app.fake.home_view(CAROL)
    [block] = [b for b in home["blocks"] if ActionId.MARK_REVIEWED in json.dumps(b)]
    clicked = block_actions_in_view(
        ActionId.MARK_REVIEWED, block.get("block_id", ""), CAROL, value=str(request_id), view=home
    )
    assert app.slack.post(clicked).status_code == 200
    assert app.ctx.access.get(request_id).reviewed_by == CAROL
    assert "Break glass to review" not in json.dumps(app.fake.home_view(CAROL))  # published again
