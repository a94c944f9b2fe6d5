"""End to end: signed Slack payloads through the real Bolt app, a fake Slack Web API, the built-in tailnet."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import httpx

from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId, CallbackId
from app.tailnet.errors import TailnetUnavailable
from tests.conftest import written
from tests.e2e.conftest import ADMIN, BOB, CAROL, EVE, REQUESTER, AppUnderTest
from tests.fakes.slack_payloads import (
    block_actions_in_message,
    block_actions_in_view,
    block_suggestion,
    global_shortcut,
    option,
    select_state,
    slash_command,
    text_input_state,
    view_submission,
)


def request_state(
    device_id: str,
    *,
    profile: str = "prod",
    duration: int = 3600,
    approvers: tuple[str, ...] = (BOB,),
    reason: str = "deploy hotfix 42",
) -> dict[str, Any]:
    """The request modal's ``view.state.values`` for a submission of these choices."""
    approver_state: dict[str, Any]
    if len(approvers) == 1:
        approver_state = select_state(approvers[0])
    else:
        approver_state = {"type": "multi_static_select", "selected_options": [option(a) for a in approvers]}
    return {
        BlockId.PROFILE: {ActionId.PROFILE_SELECT: select_state(profile)},
        BlockId.DEVICE: {ActionId.DEVICE_SELECT: select_state(device_id, element_type="external_select")},
        BlockId.DURATION: {ActionId.DURATION_SELECT: select_state(str(duration))},
        BlockId.APPROVER: {ActionId.APPROVER_SELECT: approver_state},
        BlockId.REASON: {ActionId.REASON_INPUT: text_input_state(reason)},
    }


def form_state(app: AppUnderTest, *, device: str = "laptop", **choices: Any) -> dict[str, Any]:
    """``request_state`` for one of the app's named devices."""
    return request_state(app.devices[device].id, **choices)


def open_modal(app: AppUnderTest, user: str = REQUESTER, profile: str | None = "prod") -> dict[str, Any]:
    """Run the global shortcut and choose ``profile``; return the modal as the fake Slack holds it."""
    response = app.slack.post(global_shortcut(CallbackId.REQUEST_SHORTCUT, user))
    assert response.status_code == 200, response.text
    view = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    if profile is not None:
        body = block_actions_in_view(ActionId.PROFILE_SELECT, BlockId.PROFILE, user, selected_value=profile, view=view)
        assert app.slack.post(body).status_code == 200
        view = app.fake.view(view["id"])
    return view


def submit(app: AppUnderTest, view: dict[str, Any], state: dict[str, Any], user: str = REQUESTER) -> httpx.Response:
    return app.slack.post(view_submission(CallbackId.REQUEST_MODAL, user, state, view=view))


def dm_message(app: AppUnderTest, user: str) -> tuple[str, str]:
    """(channel, ts) of the first message posted to ``user``'s DM."""
    call = next(c for c in app.fake.calls("chat.postMessage") if c.response.get("channel") == f"D{user}")
    return call.response["channel"], call.response["ts"]


def click(app: AppUnderTest, action_id: str, request_id: int, user: str, channel: str, ts: str) -> httpx.Response:
    body = block_actions_in_message(
        action_id,
        str(request_id),
        user,
        channel,
        ts,
        response_url=app.fake.response_url_for(f"{user}-{action_id}"),
        message=app.fake.message(channel, ts),
    )
    return app.slack.post(body)


def only_request_id(app: AppUnderTest) -> int:
    from sqlalchemy import select

    from app.db.tables.access import AccessRequestRow

    with app.ctx.db.session() as session:
        ids = list(session.scalars(select(AccessRequestRow.id)))
    assert len(ids) == 1
    return ids[0]


def request_and_submit(app: AppUnderTest, **kw: Any) -> int:
    view = open_modal(app)
    response = submit(app, view, form_state(app, **kw))
    assert response.status_code == 200 and not response.text, response.text
    return only_request_id(app)


def test_shortcut_options_submission_approve_grants_and_announces_after_the_write(app_server: AppUnderTest) -> None:
    app = app_server
    laptop = app.devices["laptop"]
    first = open_modal(app, profile=None)
    assert [b.get("block_id") for b in first["blocks"] if b["type"] == "input"] == ["profile"]
    view = open_modal(app)
    inputs = [b.get("block_id") for b in view["blocks"] if b["type"] == "input"]
    assert inputs == ["profile", "device", "duration", "starts_at", "approver", "reason"]

    answer = app.slack.post(block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, "", REQUESTER, view=view))
    assert answer.status_code == 200
    groups = answer.json()["option_groups"]
    assert groups[0]["label"]["text"] == "Your devices"
    assert [o["value"] for o in groups[0]["options"]] == [laptop.id]
    typed = app.slack.post(block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, "tag:pr", REQUESTER, view=view))
    assert typed.json() == {"options": []}  # prod offers own devices only (devices: own, the default)

    response = submit(app, view, form_state(app))
    assert response.status_code == 200 and response.text == ""
    request_id = only_request_id(app)
    channel, ts = dm_message(app, BOB)
    approver_dm = next(c for c in app.fake.calls("chat.postMessage") if c.response.get("ts") == ts)
    dm_text = json.dumps(approver_dm.params["blocks"])
    for fact in (
        "<@UREQ>",
        "rita-laptop.tail1.ts.net",
        "macos",
        "req@example.com",
        "custom:prodAccess = true",
        "1h",
        "deploy hotfix 42",
        ActionId.APPROVE,
        ActionId.DENY,
    ):
        assert fact in dm_text
    assert dm_message(app, REQUESTER)  # the requester's confirmation

    before = app.clock()
    response = click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    assert response.status_code == 200

    attrs = app.builtin.get_attributes(laptop.id)
    assert written(attrs) == {"custom:prodAccess": True}
    assert attrs.expiries["custom:prodAccess"] == before + timedelta(hours=1)
    [(written_at, _, _)] = app.tailnet.writes
    updates = [c for c in app.fake.calls("chat.update") if c.params["ts"] == ts]
    assert updates and all(c.at > written_at for c in updates)
    assert ActionId.APPROVE not in json.dumps(updates[-1].params["blocks"])  # buttons gone
    assert "Access granted until" in json.dumps(updates[-1].params["blocks"])
    requester_notice = [
        c
        for c in app.fake.calls("chat.postMessage")
        if c.response.get("channel") == f"D{REQUESTER}" and "granted until" in c.params.get("text", "")
    ]
    assert len(requester_notice) == 1 and requester_notice[0].at > written_at
    assert approver_dm.at < written_at < updates[0].at <= requester_notice[0].at
    assert any(c.params.get("channel") == "CACCESS" for c in app.fake.calls("chat.postMessage"))
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED


def test_forged_stale_and_unsigned_requests_get_401(app_server: AppUnderTest) -> None:
    app = app_server
    body = global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER)
    assert app.slack.post(body, signature="v0=" + "0" * 64).status_code == 401
    assert app.slack.post(body, timestamp=int(time.time()) - 600).status_code == 401
    assert app.slack.post(body, signed=False).status_code == 401
    assert app.fake.calls("views.open") == []
    assert httpx.get(f"{app.url}/healthz").json()["ok"] is True


def test_non_approver_click_is_refused_ephemerally_and_writes_nothing(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    for outsider in (EVE, REQUESTER):
        response = click(app, ActionId.APPROVE, request_id, outsider, channel, ts)
        assert response.status_code == 200
    refusals = app.fake.calls("chat.postEphemeral")
    assert [c.params["user"] for c in refusals] == [EVE, REQUESTER]
    assert "not an approver" in refusals[0].params["text"]
    assert "your own request" in refusals[1].params["text"]
    assert app.tailnet.writes == []
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {}
    assert app.ctx.access.get(request_id).status == RequestStatus.PENDING


def test_button_value_is_only_a_pointer(app_server: AppUnderTest) -> None:
    """A forged button value pointing at another request is re-checked against the database."""
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id + 99, BOB, channel, ts).status_code == 200
    assert "does not exist" in app.fake.last("chat.postEphemeral").params["text"]
    body = block_actions_in_message(ActionId.APPROVE, "1; DROP TABLE", BOB, channel, ts)
    assert app.slack.post(body).status_code == 200
    assert "malformed" in app.fake.last("chat.postEphemeral").params["text"]
    assert app.tailnet.writes == []


def test_failed_write_leaves_a_failed_request_and_no_approved_message(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    app.tailnet.fail_with = TailnetUnavailable("tailnet API unavailable (503)")
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    request = app.ctx.access.get(request_id)
    assert request.status == RequestStatus.FAILED
    posted = json.dumps([c.params for c in app.fake.calls() if c.method in ("chat.update", "chat.postMessage")])
    assert "granted until" not in posted and "Access granted" not in posted
    last_update = [c for c in app.fake.calls("chat.update") if c.params["ts"] == ts][-1]
    assert ActionId.RETRY in json.dumps(last_update.params["blocks"])
    assert "tailnet API unavailable (503)" in json.dumps(last_update.params["blocks"])
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {}

    app.tailnet.fail_with = None
    assert click(app, ActionId.RETRY, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {"custom:prodAccess": True}


def test_concurrent_clicks_grant_exactly_once(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app, approvers=(BOB,))
    channel, ts = dm_message(app, BOB)
    bodies = [
        block_actions_in_message(
            ActionId.APPROVE, str(request_id), user, channel, ts, response_url=app.fake.response_url_for(f"{user}-{i}")
        )
        for i, user in enumerate([BOB, CAROL] * 4)
    ]
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def send(body: str) -> None:
        barrier.wait()
        statuses.append(app.slack.post(body).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * len(bodies)
    assert len(app.tailnet.writes) == 1
    notices = [c for c in app.fake.calls("chat.postMessage") if "granted until" in c.params.get("text", "")]
    assert len(notices) == 1
    assert len(app.fake.calls("chat.postEphemeral")) == len(bodies) - 1


def test_submission_errors_are_shown_on_the_fields(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app)
    cases = [
        (form_state(app, approvers=(REQUESTER,)), BlockId.APPROVER, "your own request"),
        (form_state(app, approvers=(EVE,)), BlockId.APPROVER, "Only the approvers"),
        (form_state(app, duration=8 * 3600), BlockId.DURATION, "at most 4h"),
        (form_state(app, reason=""), BlockId.REASON, "why"),
    ]
    for state, block, phrase in cases:
        response = submit(app, view, state)
        assert response.status_code == 200
        answer = response.json()
        assert answer["response_action"] == "errors"
        assert phrase in answer["errors"][block]
    gone = form_state(app)
    gone[BlockId.DEVICE][ActionId.DEVICE_SELECT] = select_state("999999", element_type="external_select")
    assert "no longer in the tailnet" in submit(app, view, gone).json()["errors"][BlockId.DEVICE]
    assert app.fake.calls("chat.postMessage") == []


def test_profile_choice_updates_the_modal(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app, profile=None)
    body = block_actions_in_view(ActionId.PROFILE_SELECT, BlockId.PROFILE, REQUESTER, selected_value="pair", view=view)
    assert app.slack.post(body).status_code == 200
    updated = app.fake.view(view["id"])
    approver = next(b for b in updated["blocks"] if b.get("block_id") == BlockId.APPROVER)
    assert approver["element"]["type"] == "multi_static_select"
    assert {o["value"] for o in approver["element"]["options"]} == {BOB, CAROL, ADMIN}


def test_deny_with_a_reason(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.DENY, request_id, BOB, channel, ts).status_code == 200
    modal = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    state = {BlockId.DENY_REASON: {ActionId.DENY_REASON_INPUT: text_input_state("change freeze")}}
    response = app.slack.post(view_submission(CallbackId.DENY_MODAL, BOB, state, view=modal))
    assert response.status_code == 200 and response.text == ""
    request = app.ctx.access.get(request_id)
    assert (request.status, request.deny_reason) == (RequestStatus.DENIED, "change freeze")
    told = [c for c in app.fake.calls("chat.postMessage") if "denied" in c.params.get("text", "")]
    assert told and "change freeze" in told[0].params["text"]
    assert app.tailnet.writes == []


def test_revoke_from_the_requesters_message(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    req_channel, req_ts = dm_message(app, REQUESTER)
    assert click(app, ActionId.REVOKE, request_id, EVE, req_channel, req_ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert click(app, ActionId.REVOKE, request_id, REQUESTER, req_channel, req_ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.REVOKED
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {}
    final = [c for c in app.fake.calls("chat.update") if c.params["ts"] == ts][-1]
    assert "revoked by <@UREQ>" in json.dumps(final.params["blocks"])


def test_two_approvals_needed(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app, profile="pair", approvers=(BOB, CAROL))
    bob_channel, bob_ts = dm_message(app, BOB)
    carol_channel, carol_ts = dm_message(app, CAROL)
    click(app, ActionId.APPROVE, request_id, BOB, bob_channel, bob_ts)
    assert app.ctx.access.get(request_id).status == RequestStatus.PENDING
    assert "1 of 2 approvals" in json.dumps(app.fake.message(carol_channel, carol_ts)["blocks"])
    click(app, ActionId.APPROVE, request_id, CAROL, carol_channel, carol_ts)
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {"custom:pairAccess": "rw"}


def test_lifecycle_expiry_of_unreviewed_request_and_of_access(app_server: AppUnderTest) -> None:
    app = app_server
    stale = request_and_submit(app)
    app.clock.advance(hours=1, seconds=1)
    app.ctx.lifecycle.run_all()
    app.ctx.notifier.deliver()
    assert app.ctx.access.get(stale).status == RequestStatus.EXPIRED
    assert any("in time" in c.params.get("text", "") for c in app.fake.calls("chat.postMessage"))
    channel, ts = dm_message(app, BOB)
    assert ActionId.APPROVE not in json.dumps(app.fake.message(channel, ts)["blocks"])


def test_slash_command_and_home(app_server: AppUnderTest) -> None:
    app = app_server
    url = app.fake.response_url_for("cmd")
    help_answer = app.slack.post(slash_command("/posture", "", REQUESTER, "C1", url))
    assert help_answer.status_code == 200 and "/posture" in help_answer.json()["text"]
    unknown = app.slack.post(slash_command("/posture", "frobnicate", REQUESTER, "C1", url))
    assert "don't know `frobnicate`" in unknown.json()["text"]
    assert (
        "no active access" in app.slack.post(slash_command("/posture", "grants", REQUESTER, "C1", url)).json()["text"]
    )
    assert app.slack.post(slash_command("/posture", "request", REQUESTER, "C1", url)).status_code == 200
    assert app.fake.calls("views.open")
    from tests.fakes.slack_payloads import app_home_opened

    request_id = request_and_submit(app)
    assert app.slack.post(app_home_opened(BOB)).status_code == 200
    home = app.fake.home_view(BOB)
    assert home is not None and f"#{request_id}" in json.dumps(home)


def test_reminder_extend_opens_a_prefilled_request(app_server: AppUnderTest) -> None:
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    app.clock.advance(minutes=51)
    app.ctx.lifecycle.run_all()
    app.ctx.notifier.deliver()
    reminder = [c for c in app.fake.calls("chat.postMessage") if "ends" in c.params.get("text", "")]
    assert len(reminder) == 1 and ActionId.EXTEND in json.dumps(reminder[0].params["blocks"])
    r_channel, r_ts = reminder[0].response["channel"], reminder[0].response["ts"]
    assert click(app, ActionId.EXTEND, request_id, EVE, r_channel, r_ts).status_code == 200
    assert "Only the person who asked" in app.fake.last("chat.postEphemeral").params["text"]
    assert click(app, ActionId.EXTEND, request_id, REQUESTER, r_channel, r_ts).status_code == 200
    modal = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    device = next(b for b in modal["blocks"] if b.get("block_id") == BlockId.DEVICE)["element"]
    reason = next(b for b in modal["blocks"] if b.get("block_id") == BlockId.REASON)["element"]
    assert device["initial_option"]["value"] == app.devices["laptop"].id
    assert reason["initial_value"] == "deploy hotfix 42"
    response = submit(app, modal, form_state(app, reason="need more time"))
    assert response.status_code == 200 and response.text == ""
    from app.access import queries

    [extension] = queries.my_open_requests(app.ctx.db, REQUESTER)
    assert extension.extends_request_id == request_id


def test_config_changes_apply_without_a_restart(app_server: AppUnderTest) -> None:
    app = app_server
    text = app.config_path.read_text().replace("description: Production access", "description: Prod (changed)")
    app.config_path.write_text(text)
    import os

    os.utime(app.config_path, ns=(1, 10**18))
    view = open_modal(app, profile=None)
    labels = [o["text"]["text"] for o in view["blocks"][0]["element"]["options"]]
    assert "Prod (changed)" in labels
