"""End to end: on-call auto-approval through signed Slack payloads, the real Bolt app, and loopback fakes of
PagerDuty and Opsgenie. On call -> granted with no approval click (audited with the schedule, the approvers'
message names it); not on call -> the approvers' DM with buttons; a provider answering 500s, refusing the token or
unreachable -> the normal path, the requester sees no error. The grant is written through the built-in tailnet
and through the Tailscale adapter (against the built-in Tailscale-compatible HTTP API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.slack.ids import ActionId
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.models import Actor
from app.tailnet.tailscale import TailscaleTailnet
from app.web.server import make_server
from tests.clitools import cli_environment, invoker, ok
from tests.conftest import written
from tests.e2e.conftest import BOB, CONFIG_YAML, REQUESTER, SLACK_BOT_TOKEN, AppUnderTest, settle
from tests.e2e.test_access_flow import click, dm_message, form_state, open_modal, submit
from tests.e2e.test_request_api import API, ask, new_client, post
from tests.fakes.opsgenie import FakeOpsgenie, Period
from tests.fakes.pagerduty import FakePagerDuty, OnCallEntry

PD_TOKEN = "pd-e2e-token-0123456789"
OG_KEY = "og-e2e-key-0123456789"
PD_RULE = "    auto_approve: {pagerduty: {schedule_ids: [PSCHED1]}}\n"
OG_RULE = "    auto_approve: {opsgenie: {schedules: [SRE Primary]}}\n"


@pytest.fixture
def fake_pagerduty(clock: FrozenClock) -> Iterator[FakePagerDuty]:
    with FakePagerDuty(PD_TOKEN) as fake:
        fake.add_user("PREQ001", "req@example.com", "Rita Requester")
        fake.add_user("PBOB001", "bob@example.com", "Bob Approver")
        fake.add_schedule("PSCHED1", "SRE Primary")
        fake.add_policy("PPOL1", "Ops")
        yield fake


@pytest.fixture
def fake_opsgenie() -> Iterator[FakeOpsgenie]:
    with FakeOpsgenie(OG_KEY) as fake:
        yield fake


@pytest.fixture
def extra_settings(fake_pagerduty: FakePagerDuty, fake_opsgenie: FakeOpsgenie) -> dict[str, str]:
    return {
        "PAGERDUTY_API_TOKEN": PD_TOKEN,
        "PAGERDUTY_BASE_URL": fake_pagerduty.url,
        "OPSGENIE_API_KEY": OG_KEY,
        "OPSGENIE_BASE_URL": fake_opsgenie.url,
    }


def auto_approve(app: AppUnderTest, rule: str) -> None:
    """Give the ``prod`` profile an ``auto_approve`` rule (the config is re-read on change)."""
    marker = "    notify_channel: CACCESS\n"
    app.config_path.write_text(CONFIG_YAML.replace(marker, marker + rule, 1))


def put_rita_on_call(fake: FakePagerDuty, clock: FrozenClock) -> None:
    window = (clock() - timedelta(hours=2), clock() + timedelta(hours=6))
    fake.put_on_call(OnCallEntry("PREQ001", "PPOL1", "PSCHED1", 1, *window))


def request_now(app: AppUnderTest) -> AccessRequestRow:
    view = open_modal(app)
    response = submit(app, view, form_state(app))
    assert response.status_code == 200 and not response.text, response.text  # acknowledged, no error
    with app.ctx.db.session() as session:
        rows = list(session.scalars(select(AccessRequestRow)))
        session.expunge_all()
    assert len(rows) == 1
    return rows[0]


def audit_actions(db: Database, request_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with db.session() as session:
        return [(e.action, e.actor, e.details) for e in audit.query(session) if e.target == f"request/{request_id}"]


def approver_message(app: AppUnderTest, user: str = BOB) -> str:
    channel, ts = dm_message(app, user)
    return json.dumps(app.fake.message(channel, ts))


def test_a_requester_on_call_is_granted_without_any_click(
    app_server: AppUnderTest, fake_pagerduty: FakePagerDuty, clock: FrozenClock
) -> None:
    app = app_server
    auto_approve(app, PD_RULE)
    put_rita_on_call(fake_pagerduty, clock)
    row = request_now(app)
    assert row.status == RequestStatus.GRANTED and row.decided_by == "pagerduty:PSCHED1"
    assert row.auto_approval is not None and row.auto_approval["schedule_name"] == "SRE Primary"
    assert len(app.tailnet.writes) == 1
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {"custom:prodAccess": True}
    actions = audit_actions(app.ctx.db, row.id)
    assert [a for a, _, _ in actions] == ["Access requested", "Access auto-approved", "Access granted"]
    _, actor, details = actions[1]
    assert actor == "pagerduty:PSCHED1" and details["schedule"] == "PSCHED1"
    assert details["window_end"] == (clock() + timedelta(hours=6)).isoformat()
    message = approver_message(app)
    assert "on-call schedule *SRE Primary* (PagerDuty, on call until" in message
    assert ActionId.APPROVE not in message  # no buttons left to click
    granted = [c for c in app.fake.calls("chat.postMessage") if "is granted until" in json.dumps(c.params)]
    assert len(granted) == 1  # the requester told once, after the write
    [post] = [c for c in app.fake.calls("chat.postMessage") if c.params.get("channel") == "CACCESS"]
    assert "approved by on-call schedule *SRE Primary*" in json.dumps(post.params)
    assert any(path == "/oncalls" for path in fake_pagerduty.paths())


def test_not_on_call_goes_to_the_approvers(
    app_server: AppUnderTest, fake_pagerduty: FakePagerDuty, clock: FrozenClock
) -> None:
    app = app_server
    auto_approve(app, PD_RULE)
    fake_pagerduty.put_on_call(OnCallEntry("PBOB001", "PPOL1", "PSCHED1", 1, clock(), clock() + timedelta(hours=8)))
    row = request_now(app)
    assert row.status == RequestStatus.PENDING and app.tailnet.writes == []
    assert "/oncalls" in fake_pagerduty.paths()
    assert ActionId.APPROVE in approver_message(app)
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, row.id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(row.id).status == RequestStatus.GRANTED


@pytest.mark.parametrize("failure", ["500", "401", "unreachable"])
def test_a_failing_provider_is_the_normal_path_and_no_error(
    app_server: AppUnderTest, fake_pagerduty: FakePagerDuty, clock: FrozenClock, failure: str
) -> None:
    app = app_server
    auto_approve(app, PD_RULE)
    put_rita_on_call(fake_pagerduty, clock)
    if failure == "500":
        fake_pagerduty.refuse(500, times=10)
    elif failure == "401":
        fake_pagerduty.token = "rotated-elsewhere"
    else:
        fake_pagerduty.stop()  # nothing listens on its port any more
    row = request_now(app)
    assert row.status == RequestStatus.PENDING and app.tailnet.writes == []
    assert ActionId.APPROVE in approver_message(app)
    texts = json.dumps([c.params for c in app.fake.calls()])
    assert "Traceback" not in texts and "went wrong" not in texts


def test_opsgenie_on_call_with_the_window_from_its_timeline(
    app_server: AppUnderTest, fake_opsgenie: FakeOpsgenie, clock: FrozenClock
) -> None:
    app = app_server
    auto_approve(app, OG_RULE)
    end = clock() + timedelta(hours=3)
    fake_opsgenie.add_schedule("SRE Primary", Period("req@example.com", clock() - timedelta(hours=9), end))
    row = request_now(app)
    assert row.status == RequestStatus.GRANTED and row.decided_by == "opsgenie:SRE Primary"
    assert row.auto_approval is not None and row.auto_approval["window_end"] == end.isoformat()
    assert len(app.tailnet.writes) == 1
    assert "on-call schedule *SRE Primary* (Opsgenie, on call until" in approver_message(app)


@pytest.fixture
def via_tailscale(app_server: AppUnderTest, db: Database, clock: FrozenClock) -> Iterator[TailscaleTailnet]:
    """The access service writes through the Tailscale adapter, against the built-in Tailscale-compatible API."""
    server = make_server(make_api(app_server.builtin, db, clock=clock), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, key = AuthStore(db, clock=clock).create_api_key(actor=Actor("cli:setup"), description="e2e on-call")
    url = f"http://127.0.0.1:{server.server_port}"
    access = app_server.ctx.access
    with TailscaleTailnet(db, api_url=url, api_key=key, clock=clock, sleep=lambda _s: None) as adapter:
        before, access.tailnet = access.tailnet, adapter
        try:
            yield adapter
        finally:
            access.tailnet = before
    server.shutdown()
    server.server_close()


def test_on_call_grant_through_the_tailscale_adapter(
    app_server: AppUnderTest, via_tailscale: TailscaleTailnet, fake_pagerduty: FakePagerDuty, clock: FrozenClock
) -> None:
    app = app_server
    auto_approve(app, PD_RULE)
    put_rita_on_call(fake_pagerduty, clock)
    row = request_now(app)
    assert row.status == RequestStatus.GRANTED
    attributes = app.builtin.get_attributes(app.devices["laptop"].id)
    assert written(attributes) == {"custom:prodAccess": True}
    assert attributes.expiries["custom:prodAccess"] == clock() + timedelta(hours=1)


def test_requests_outside_slack_are_auto_approved_too(
    app_server: AppUnderTest,
    fake_pagerduty: FakePagerDuty,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    db_url: str,
) -> None:
    """The request API and ``accessbot request`` take the same on-call path as the Slack form."""
    app = app_server
    auto_approve(app, PD_RULE)
    put_rita_on_call(fake_pagerduty, clock)
    _, token = new_client(app)
    response = post(app, API, token, ask())
    assert response.status_code == 201 and response.json()["status"] == "pending", response.text
    settle(app.ctx)  # the lookup runs after the answer, on the work pool, then the DMs
    api_request = app.ctx.access.get(response.json()["id"])
    assert api_request.status == RequestStatus.GRANTED
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {"custom:prodAccess": True}

    cli_environment(monkeypatch, tmp_path, db_url)
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(app.config_path))
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", app.fake.base_url)
    for name, value in {"PAGERDUTY_API_TOKEN": PD_TOKEN, "PAGERDUTY_BASE_URL": fake_pagerduty.url}.items():
        monkeypatch.setenv(name, value)
    run = invoker(monkeypatch, app.clock)
    asked = (
        "--profile",
        "prod",
        "--device",
        "rita-laptop",
        "--duration",
        "30m",
        "--reason",
        "page 7",
        "--as",
        REQUESTER,
    )
    shown = json.loads(ok(run("request", *asked, "--json")))
    assert (shown["origin"], shown["status"]) == ("cli", "granted")
    actions = [a for a, _, _ in audit_actions(app.ctx.db, shown["id"])]
    assert actions == ["Access requested", "Access auto-approved", "Access granted"]
