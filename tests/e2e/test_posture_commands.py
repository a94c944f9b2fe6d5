"""``/posture`` admin commands for EDR integrations, through signed payloads and the real Bolt app."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from app.db import audit
from app.slack.ids import CallbackId
from tests.conftest import written
from tests.e2e.conftest import ADMIN, EVE, AppUnderTest
from tests.fakes.slack_payloads import slash_command, text_input_state, view_submission
from tests.fakes.vendors import HUNTRESS_KEY, HUNTRESS_SECRET, FakeHuntress, huntress_agent


@pytest.fixture
def fake_huntress() -> Iterator[FakeHuntress]:
    agents = [huntress_agent(0, "c02rita ", defender_policy_status="Non Compliant"), huntress_agent(1, None)]
    with FakeHuntress(agents, rate_limit_per_minute=None) as fake:
        yield fake


def command(app: AppUnderTest, user: str, text: str) -> dict[str, object]:
    url = app.fake.response_url_for(f"{user}-{text.replace(' ', '-')}")
    response = app.slack.post(slash_command("/posture", text, user, "CADMIN", url))
    assert response.status_code == 200
    return response.json() if response.text else {}


def connect(app: AppUnderTest, fake: FakeHuntress) -> None:
    assert command(app, ADMIN, "connect huntress") == {}
    modal = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    fields = [b["block_id"] for b in modal["blocks"] if b["type"] == "input"]
    assert fields == ["field:api_key", "field:api_secret", "field:organization_id", "field:base_url"]
    state = {
        "field:api_key": {"value": text_input_state(HUNTRESS_KEY)},
        "field:api_secret": {"value": text_input_state(HUNTRESS_SECRET)},
        "field:base_url": {"value": text_input_state(fake.url)},
    }
    response = app.slack.post(view_submission(CallbackId.CONNECT_MODAL, ADMIN, state, view=modal))
    assert response.status_code == 200 and response.text == "", response.text


def test_non_admins_are_refused_and_the_attempt_is_audited(app_server: AppUnderTest) -> None:
    app = app_server
    for text in ("sync", "sync huntress", "status", "connect huntress", "disconnect huntress"):
        answer = command(app, EVE, text)
        assert "Only accessbot admins" in str(answer["text"])
    with app.ctx.db.session() as session:
        refused = audit.query(session, action="Refused posture command")
    assert [e.actor for e in refused] == [EVE] * 5
    assert app.fake.calls("views.open") == []


def test_connect_syncs_at_once_then_status_sync_and_disconnect(
    app_server: AppUnderTest, fake_huntress: FakeHuntress
) -> None:
    app = app_server
    laptop = app.devices["laptop"]
    connect(app, fake_huntress)
    assert written(app.builtin.get_attributes(laptop.id)) == {
        "huntress:defenderPolicyStatus": "Non Compliant",
        "huntress:defenderStatus": "Protected",
        "huntress:firewallStatus": "Enabled",
    }
    told = [c for c in app.fake.calls("chat.postMessage") if c.response.get("channel") == f"D{ADMIN}"]
    assert (
        told and "1 match between 1 Tailscale devices with identifiers and 2 Huntress agents" in told[-1].params["text"]
    )
    with app.ctx.db.session() as session:
        created = audit.query(session, action="Create posture integration")
    assert [e.actor for e in created] == [ADMIN]
    assert HUNTRESS_SECRET not in json.dumps([e.to_json() for e in created])

    status = command(app, ADMIN, "status")
    card = json.dumps(status["blocks"])
    assert "Huntress" in card and "1 match between" in card and "Agents without serial" in card
    assert "Matching: 1 matched by serial number, 0 by MAC address" in card

    fake_huntress.set_agents([huntress_agent(0, "C02RITA", firewall_status="Isolated")])
    answer = command(app, ADMIN, "sync huntress")
    assert "Syncing huntress" in str(answer["text"])
    result = app.fake.last("response_url")
    assert "Huntress sync done" in result.params["text"]
    assert app.builtin.get_attributes(laptop.id).attributes["huntress:firewallStatus"] == "Isolated"

    assert "don't know the vendor" in str(command(app, ADMIN, "sync acme")["text"])
    assert "CrowdStrike is not connected" in str(command(app, ADMIN, "sync crowdstrike")["text"])

    answer = command(app, ADMIN, "disconnect huntress")
    assert "Disconnecting Huntress" in str(answer["text"])
    assert "3 attributes removed" in app.fake.last("response_url").params["text"]
    assert written(app.builtin.get_attributes(laptop.id)) == {}
    assert "No EDR integration is connected" in str(command(app, ADMIN, "status")["text"])


def test_connect_form_errors_are_shown_on_the_field(app_server: AppUnderTest) -> None:
    app = app_server
    command(app, ADMIN, "connect huntress")
    modal = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    state = {
        "field:api_key": {"value": text_input_state("k")},
        "field:api_secret": {"value": text_input_state("s")},
        "field:base_url": {"value": text_input_state("ftp://nope")},
    }
    answer = app.slack.post(view_submission(CallbackId.CONNECT_MODAL, ADMIN, state, view=modal)).json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == ["field:base_url"]
