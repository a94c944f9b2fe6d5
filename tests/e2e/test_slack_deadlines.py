"""Slack as it really behaves: 3 s to acknowledge, 429s, trigger ids that expire.

The app runs as in production (Bolt acknowledges first); ``SlackEventsClient`` gives up on an answer
after 3 s as Slack does (``LateAck``), and the fake Web API refuses a trigger id older than 3 s.
"""

from __future__ import annotations

import json

from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId
from app.tailnet.models import Actor
from tests.conftest import written
from tests.e2e.conftest import BOB, EVE, REQUESTER, AppUnderTest
from tests.e2e.test_access_flow import click, dm_message, form_state, only_request_id, open_modal, submit
from tests.fakes.slack_payloads import app_home_opened, block_actions_in_view, block_suggestion, slash_command

SLOW = 3.5
"""Seconds every attribute read and write of the tailnet takes in these tests (more than Slack's 3 s)."""


def command(app: AppUnderTest, user: str, text: str) -> str:
    """Run ``/posture <text>``; the raw acknowledgement body."""
    url = app.fake.response_url_for(f"{user}-{text.split()[0]}")
    response = app.slack.post(slash_command("/posture", text, user, "C1", url))
    assert response.status_code == 200
    return response.text


def pending_with_cold_directory(app: AppUnderTest) -> tuple[int, str, str]:
    """Submit a request for ``prod``; (its id, BOB's DM channel and ts); then forget every Slack answer, so the
    next click must ask Slack again for the approvers."""
    view = open_modal(app)
    submit(app, view, form_state(app))
    channel, ts = dm_message(app, BOB)
    app.ctx.directory.clear()
    return only_request_id(app), channel, ts


def test_every_interaction_is_acknowledged_in_time_with_a_slow_tailnet(app_server: AppUnderTest) -> None:
    app = app_server
    laptop = app.devices["laptop"]
    huntress = Actor.system("sync:huntress", "huntress")
    app.builtin.set_attribute(laptop.id, "huntress:firewallStatus", "Enabled", actor=huntress)
    app.tailnet.delay = SLOW

    view = open_modal(app, profile="gated")  # shortcut, then the profile select
    options = app.slack.post(block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, "", REQUESTER, view=view))
    assert options.json()["option_groups"][0]["options"][0]["value"] == laptop.id

    # the posture check of the submission takes 3.5 s: acknowledged with a "checking" view, outcome after
    answer = submit(app, view, form_state(app, profile="gated")).json()
    assert answer["response_action"] == "update" and "Checking your request" in json.dumps(answer["view"])
    request_id = only_request_id(app)  # stored once: Slack did not give up, so nobody submitted twice
    shown = app.fake.view(view["id"])
    assert f"Request #{request_id} was sent" in json.dumps(shown["blocks"])

    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).text == ""  # posture again + the write
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert written(app.builtin.get_attributes(laptop.id))["custom:gatedAccess"] is True

    assert command(app, REQUESTER, "check rita-laptop") == ""  # acknowledged empty: the answer comes after
    assert "posture:trusted" in json.dumps(app.fake.last("response_url").params["blocks"])
    assert command(app, REQUESTER, "attrs rita-laptop") == ""
    assert "custom:gatedAccess" in json.dumps(app.fake.last("response_url").params["blocks"])
    assert "active access" in command(app, REQUESTER, "grants")  # no tailnet involved: answered at once

    req_channel, req_ts = dm_message(app, REQUESTER)
    click(app, ActionId.REVOKE, request_id, REQUESTER, req_channel, req_ts)
    assert app.ctx.access.get(request_id).status == RequestStatus.REVOKED
    assert app.slack.late == []


def test_a_slow_submission_that_fails_its_check_shows_the_form_again(app_server: AppUnderTest) -> None:
    app = app_server
    app.tailnet.delay = SLOW
    view = open_modal(app, profile="gated")
    answer = submit(app, view, form_state(app, profile="gated")).json()
    assert answer["response_action"] == "update"
    shown = app.fake.view(view["id"])
    text = json.dumps(shown["blocks"])
    assert "Not sent yet" in text and "does not meet posture:trusted" in text
    assert next(b.get("block_id") for b in shown["blocks"] if b["type"] == "input") == BlockId.PROFILE
    assert app.fake.calls("chat.postMessage") == []  # nothing was stored, nobody was asked


def test_an_approver_whose_lookup_hits_a_429_approves_on_the_first_click(app_server: AppUnderTest) -> None:
    app = app_server
    request_id, channel, ts = pending_with_cold_directory(app)
    mark = app.fake.mark()
    app.fake.fail_next("users.lookupByEmail", status=429, retry_after=1)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    lookups = [c for c in app.fake.calls("users.lookupByEmail") if c.seq > mark]
    assert [c.status for c in lookups][:2] == [429, 200]  # slack_sdk waited out Retry-After, then asked again
    assert not [c for c in app.fake.calls("chat.postEphemeral") if "not an approver" in c.params.get("text", "")]


def test_slack_busy_for_long_is_said_and_not_remembered(app_server: AppUnderTest) -> None:
    app = app_server
    request_id, channel, ts = pending_with_cold_directory(app)
    app.fake.fail_next("users.lookupByEmail", status=429, retry_after=60)  # longer than a click may wait
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    told = app.fake.last("chat.postEphemeral").params["text"]
    assert "Slack is busy" in told and "not an approver" not in told
    assert app.ctx.access.get(request_id).status == RequestStatus.PENDING
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)  # Slack answers again: the error was not cached
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED


def test_deny_opens_its_modal_before_anything_slow(app_server: AppUnderTest) -> None:
    app = app_server
    request_id, channel, ts = pending_with_cold_directory(app)
    mark = app.fake.mark()
    app.fake.fail_next("users.lookupByEmail", status=429, retry_after=2)
    click(app, ActionId.DENY, request_id, BOB, channel, ts)
    opened = next(c for c in app.fake.calls("views.open") if c.seq > mark)
    first_lookup = next(c for c in app.fake.calls("users.lookupByEmail") if c.seq > mark)
    assert opened.ok and opened.seq < first_lookup.seq
    assert "Deny" in json.dumps(app.fake.view(opened.response["view"]["id"]))


def test_a_refusal_after_slow_work_comes_by_message_not_by_an_expired_modal(app_server: AppUnderTest) -> None:
    app = app_server
    request_id, _, _ = pending_with_cold_directory(app)
    app.slack.post(app_home_opened(EVE))
    home = app.fake.home_view(EVE)
    mark = app.fake.mark()
    app.fake.fail_next("users.lookupByEmail", status=429, retry_after=3)  # the refusal comes after > 3 s
    body = block_actions_in_view(ActionId.APPROVE, "decide", EVE, value=str(request_id), view=home)
    assert app.slack.post(body).text == ""
    later = [c for c in app.fake.calls() if c.seq > mark]
    assert not [c for c in later if c.method == "views.open"]  # the click's trigger had expired by then
    dm = [c for c in later if c.method == "chat.postMessage" and c.response.get("channel") == f"D{EVE}"]
    assert dm and "not an approver" in dm[-1].params["text"]
