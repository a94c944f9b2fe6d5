"""Posture-gated profiles and ``/posture check``/``attrs`` through signed payloads and the real Bolt app."""

from __future__ import annotations

import json

from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId
from app.tailnet.models import Actor
from tests.e2e.conftest import ADMIN, BOB, EVE, REQUESTER, AppUnderTest
from tests.e2e.test_access_flow import click, dm_message, form_state, only_request_id, open_modal, submit
from tests.fakes.slack_payloads import slash_command

HUNTRESS = Actor.system("sync:huntress", "huntress")


def firewall(app: AppUnderTest, status: str) -> None:
    app.builtin.set_attribute(app.devices["laptop"].id, "huntress:firewallStatus", status, actor=HUNTRESS)


def test_modal_refuses_a_device_that_fails_the_posture_and_says_which_condition(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app, profile="gated")
    answer = submit(app, view, form_state(app, profile="gated")).json()
    assert answer["response_action"] == "errors"
    error = answer["errors"][BlockId.DEVICE]
    assert "does not meet posture:trusted" in error and "huntress:firewallStatus is not set" in error
    firewall(app, "Disabled")
    error = submit(app, view, form_state(app, profile="gated")).json()["errors"][BlockId.DEVICE]
    assert "huntress:firewallStatus is 'Disabled', not 'Enabled'" in error
    assert app.fake.calls("chat.postMessage") == []


def test_posture_is_checked_again_at_approval(app_server: AppUnderTest) -> None:
    app = app_server
    firewall(app, "Enabled")
    view = open_modal(app, profile="gated")
    response = submit(app, view, form_state(app, profile="gated"))
    assert response.status_code == 200 and response.text == ""
    request_id = only_request_id(app)
    firewall(app, "Isolated")  # the device fell out of compliance while the request waited
    channel, ts = dm_message(app, BOB)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    request = app.ctx.access.get(request_id)
    assert request.status == RequestStatus.FAILED
    assert "does not meet posture:trusted" in (request.last_error or "")
    assert app.tailnet.writes == []
    assert "custom:gatedAccess" not in app.builtin.get_attributes(app.devices["laptop"].id).attributes
    updated = [c for c in app.fake.calls("chat.update") if c.params["ts"] == ts][-1]
    assert "huntress:firewallStatus is 'Isolated', not 'Enabled'" in json.dumps(updated.params["blocks"])
    told = [c for c in app.fake.calls("chat.postMessage") if c.response.get("channel") == f"D{REQUESTER}"]
    assert any("does not meet posture:trusted" in c.params["text"] for c in told)

    firewall(app, "Enabled")
    click(app, ActionId.RETRY, request_id, BOB, channel, ts)
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert app.builtin.get_attributes(app.devices["laptop"].id).attributes["custom:gatedAccess"] is True


def command(app: AppUnderTest, user: str, text: str) -> dict[str, object]:
    url = app.fake.response_url_for(f"{user}-check")
    response = app.slack.post(slash_command("/posture", text, user, "C1", url))
    assert response.status_code == 200
    return response.json()


def test_posture_check_and_attrs(app_server: AppUnderTest) -> None:
    app = app_server
    firewall(app, "Disabled")
    own = command(app, REQUESTER, "check rita-laptop")
    text = json.dumps(own["blocks"], ensure_ascii=False)
    assert "posture:trusted" in text and ":x:" in text
    assert "huntress:firewallStatus is 'Disabled', not 'Enabled'" in text
    assert "node:os" in text and "✓" in text  # the passing condition is explained too
    assert "grants[0]" in text

    assert "not your device" in str(command(app, EVE, "check rita-laptop")["text"])
    assert "posture:trusted" in json.dumps(command(app, ADMIN, "check rita-laptop")["blocks"])
    assert "no device" in str(command(app, REQUESTER, "check nosuchdevice")["text"]).lower()

    app.builtin.set_attribute(
        app.devices["laptop"].id,
        "custom:tier",
        2,
        actor=Actor("cli:x"),
        expiry=app.clock() + __import__("datetime").timedelta(minutes=30),
    )
    attrs = json.dumps(command(app, REQUESTER, "attrs rita-laptop")["blocks"], ensure_ascii=False)
    assert "`custom:tier` = 2 — 30m left" in attrs and "`node:os` = 'macos'" in attrs
