"""End to end: scheduled access through signed Slack payloads, the real Bolt app and the lifecycle.

A start picked in the modal, approved before it, nothing written until the start, then the attribute with the
window's end as its expiry; the DMs and App Home say when; revoking before the start writes nothing. The same
start through the Tailscale adapter (against the built-in tailnet's Tailscale API on a loopback port).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from app.access.lifecycle import Lifecycle
from app.access.people import StaticDirectory
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from tests.conftest import written
from tests.e2e.conftest import BOB, EVE, REQUESTER, AppUnderTest
from tests.e2e.test_access_flow import click, dm_message, form_state, only_request_id, open_modal, submit
from tests.fakes.slack_payloads import app_home_opened, block_actions_in_view, slash_command
from tests.integration.vendor_contract import tailscale_remote

ATTRIBUTE = "custom:prodAccess"


def start_state(starts_at: datetime) -> dict[str, Any]:
    """The start picker's state as Slack sends it (``selected_date_time``: UNIX seconds)."""
    return {ActionId.START_PICKER: {"type": "datetimepicker", "selected_date_time": int(starts_at.timestamp())}}


def scheduled_request(app: AppUnderTest, starts_at: datetime) -> int:
    view = open_modal(app)
    state = {**form_state(app), BlockId.STARTS_AT: start_state(starts_at)}
    response = submit(app, view, state)
    assert response.status_code == 200 and not response.text, response.text
    return only_request_id(app)


def dm_texts(app: AppUnderTest, user: str) -> list[str]:
    """Every message text and block JSON posted to ``user``'s DM, oldest first."""
    return [
        c.params.get("text", "") + json.dumps(c.params.get("blocks", []))
        for c in app.fake.calls("chat.postMessage")
        if c.response.get("channel") == f"D{user}"
    ]


def run_lifecycle(app: AppUnderTest) -> dict[str, int]:
    moved = app.ctx.lifecycle.run_all()
    app.ctx.notifier.deliver()
    return moved


def test_modal_offers_an_optional_start_and_shows_the_window_once_picked(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app)
    block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.STARTS_AT)
    assert block["type"] == "input" and block["optional"] is True
    assert block["element"]["type"] == "datetimepicker" and "initial_date_time" not in block["element"]
    assert "as soon as it is approved" in block["hint"]["text"]
    start = app.clock() + timedelta(hours=2)
    picked = block_actions_in_view(
        ActionId.START_PICKER,
        BlockId.STARTS_AT,
        REQUESTER,
        action_type="datetimepicker",
        action_fields={"selected_date_time": int(start.timestamp())},
        view=view,
        state_values=form_state(app, duration=1800),
    )
    assert app.slack.post(picked).status_code == 200
    refreshed = app.fake.view(view["id"])
    block = next(b for b in refreshed["blocks"] if b.get("block_id") == BlockId.STARTS_AT)
    assert block["element"]["initial_date_time"] == int(start.timestamp())
    assert "2026-11-21 14:00 UTC until 2026-11-21 14:30 UTC" in block["hint"]["text"]


def test_a_start_in_the_past_or_too_far_ahead_is_a_field_error(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app)
    for starts_at, words in (
        (app.clock() - timedelta(hours=1), "in the past"),
        (app.clock() + timedelta(days=40), "30d"),
    ):
        state = {**form_state(app), BlockId.STARTS_AT: start_state(starts_at)}
        response = submit(app, view, state)
        assert response.status_code == 200
        answer = response.json()
        assert answer["response_action"] == "errors" and words in answer["errors"][BlockId.STARTS_AT]
    assert not app.fake.calls("chat.postMessage")  # nothing stored, nobody asked


def test_approved_ahead_written_at_the_start_until_the_window_end(app_server: AppUnderTest) -> None:
    app = app_server
    laptop = app.devices["laptop"].id
    start = app.clock() + timedelta(hours=3)
    request_id = scheduled_request(app, start)
    channel, ts = dm_message(app, BOB)
    assert f"<!date^{int(start.timestamp())}^" in json.dumps(app.fake.message(channel, ts)["blocks"])  # the window
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.SCHEDULED
    assert not app.tailnet.writes and ATTRIBUTE not in written(app.builtin.get_attributes(laptop))
    approver_copy = json.dumps(app.fake.message(channel, ts)["blocks"])
    assert ":calendar: Approved by <@UBOB>" in approver_copy and ActionId.REVOKE in approver_copy
    scheduled = [t for t in dm_texts(app, REQUESTER) if "approved your" in t]
    assert len(scheduled) == 1 and "starts" in scheduled[0] and "lasts until" in scheduled[0]

    assert app.slack.post(app_home_opened(REQUESTER)).status_code == 200
    home = json.dumps(app.fake.home_view(REQUESTER))
    assert "Upcoming: from" in home and ActionId.REVOKE in home
    url = app.fake.response_url_for("grants")
    listed = app.slack.post(slash_command("/posture", "grants", REQUESTER, "C1", url)).json()["text"]
    assert f"upcoming: from <!date^{int(start.timestamp())}^" in listed

    app.clock.advance(hours=2, minutes=50)  # past the request timeout (1h): a scheduled request stays
    moved = run_lifecycle(app)
    assert moved["request_expired"] == 0 and moved["start_reminded"] == 1
    assert any(":alarm_clock:" in t and "starts" in t for t in dm_texts(app, REQUESTER))
    assert not app.tailnet.writes
    app.clock.advance(minutes=10, seconds=20)
    assert run_lifecycle(app)["started"] == 1
    granted = app.ctx.access.get(request_id)
    assert granted.status == RequestStatus.GRANTED and granted.expires_at == start + timedelta(hours=1)
    assert app.builtin.get_attributes(laptop).expiries[ATTRIBUTE] == start + timedelta(hours=1)
    assert len(app.tailnet.writes) == 1
    assert run_lifecycle(app)["started"] == 0 and len(app.tailnet.writes) == 1  # exactly once
    told = [t for t in dm_texts(app, REQUESTER) if "is granted until" in t]
    assert len(told) == 1 and f"<!date^{int((start + timedelta(hours=1)).timestamp())}^" in told[0]
    announced = [c for c in app.fake.calls("chat.postMessage") if c.params.get("channel") == "CACCESS"]
    assert len(announced) == 1


def test_revoked_before_the_start_writes_nothing(app_server: AppUnderTest) -> None:
    app = app_server
    start = app.clock() + timedelta(hours=2)
    request_id = scheduled_request(app, start)
    channel, ts = dm_message(app, BOB)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    r_channel, r_ts = dm_message(app, REQUESTER)  # the requester's copy now has Revoke
    assert ActionId.REVOKE in json.dumps(app.fake.message(r_channel, r_ts)["blocks"])
    assert click(app, ActionId.REVOKE, request_id, EVE, r_channel, r_ts).status_code == 200
    assert "Only the requester" in app.fake.last("chat.postEphemeral").params["text"]
    assert click(app, ActionId.REVOKE, request_id, REQUESTER, r_channel, r_ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.REVOKED
    assert "Access revoked" in json.dumps(app.fake.message(channel, ts)["blocks"])  # the approver's copy
    app.clock.advance(hours=2, minutes=1)
    assert run_lifecycle(app)["started"] == 0
    assert not app.tailnet.writes


def test_a_missed_window_ends_without_a_write_and_says_so(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = scheduled_request(app, app.clock() + timedelta(minutes=30))
    channel, ts = dm_message(app, BOB)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    app.clock.advance(hours=2)  # no scheduler ran during the whole window
    assert run_lifecycle(app)["started"] == 1
    assert app.ctx.access.get(request_id).status == RequestStatus.ENDED
    assert not app.tailnet.writes
    assert any("never started" in t for t in dm_texts(app, REQUESTER))


def test_scheduled_start_through_the_tailscale_adapter(db: Database, clock: FrozenClock) -> None:
    builtin = BuiltinTailnet(db, clock=clock)
    device = builtin.add_device(name="rita-laptop", user="req@example.com", os="macos", actor=Actor("cli:t"))
    config = Config.model_validate(
        {
            "request_timeout": "1h",
            "profiles": [
                {"id": "prod", "attribute": ATTRIBUTE, "max_duration": "4h", "approvers": ["bob@example.com"]}
            ],
        }
    )
    directory = StaticDirectory({REQUESTER: "req@example.com", BOB: "bob@example.com"}, {})
    with tailscale_remote(db, builtin, clock) as remote:
        service = AccessService(db, remote, lambda: config, directory, clock=clock)
        life = Lifecycle(db, remote, lambda: config, clock=clock, access=service)
        start = clock() + timedelta(hours=1)
        request = service.submit(
            requester_id=REQUESTER,
            profile_id="prod",
            device=remote.get_device(device.id),
            duration=timedelta(hours=1),
            approver_ids=[BOB],
            reason="maintenance window",
            starts_at=start,
        )
        assert service.approve(request.id, BOB).status == RequestStatus.SCHEDULED
        assert ATTRIBUTE not in written(builtin.get_attributes(device.id))
        clock.advance(hours=1, seconds=5)
        assert life.start_scheduled() == 1
        assert service.get(request.id).status == RequestStatus.GRANTED
        assert builtin.get_attributes(device.id).expiries[ATTRIBUTE] == start + timedelta(hours=1)
        assert life.start_scheduled() == 0
