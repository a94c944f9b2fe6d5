"""End to end: drift reconcile beside the real Slack app. A grant made through signed payloads is never drift; an
attribute set by hand is reported to the admin once by DM, counted in ``/posture status``, and removed (audited)
by a profile's ``remove_unexplained``."""

from __future__ import annotations

import json

from app.access.reconcile import ACTOR_ID, DRIFT_REMOVED, Reconciler, Removal
from app.db import audit
from app.slack.drift_report import DriftReporter
from app.slack.ids import ActionId
from app.tailnet.models import Actor
from tests.conftest import written
from tests.e2e.conftest import ADMIN, BOB, CONFIG_YAML, AppUnderTest
from tests.e2e.test_access_flow import click, dm_message, request_and_submit
from tests.fakes.slack_payloads import slash_command

PROD = "custom:prodAccess"
PAIR = "custom:pairAccess"


def reconcile(app: AppUnderTest, removal: Removal = Removal.PROFILES) -> int:
    """One scheduled run as ``Services.reconcile_and_report`` makes it (the app's tailnet, config and notifier)."""
    ctx = app.ctx
    reconciler = Reconciler(ctx.db, app.tailnet, ctx.config, clock=app.clock)
    report = DriftReporter(ctx.client, ctx.notifier, ctx.config)
    return reconciler.run(removal=removal, report=report).reported


def admin_dms(app: AppUnderTest) -> list[str]:
    return [
        str(c.params.get("text", ""))
        for c in app.fake.calls("chat.postMessage")
        if c.ok and c.response.get("channel") == f"D{ADMIN}" and "without an active grant" in c.params.get("text", "")
    ]


def status(app: AppUnderTest) -> dict[str, object]:
    url = app.fake.response_url_for("status")
    return dict(app.slack.post(slash_command("/posture", "status", ADMIN, "CADMIN", url)).json())


def test_a_slack_grant_is_not_drift_and_a_hand_set_attribute_is_reported_once(app_server: AppUnderTest) -> None:
    app = app_server
    laptop, db_box = app.devices["laptop"], app.devices["db"]
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    app.ctx.notifier.deliver()
    assert written(app.builtin.get_attributes(laptop.id)) == {PROD: True}

    app.builtin.set_attribute(db_box.id, PROD, True, actor=Actor("cli:someone"))
    assert reconcile(app) == 1
    assert reconcile(app) == 0
    [text] = admin_dms(app)
    assert "1 device attribute held without an active grant" in text
    [post] = [c for c in app.fake.calls("chat.postMessage") if c.params.get("text") == text]
    shown = json.dumps(post.params["blocks"])
    assert "db-prod-1" in shown and "rita-laptop" not in shown and "Production access" in shown

    answer = status(app)
    assert "1 device attribute(s) held without an active grant (drift)" in str(answer["text"])
    assert "accessbot reconcile --fix" in json.dumps(answer["blocks"])
    assert written(app.builtin.get_attributes(db_box.id)) == {PROD: True}  # reported, not removed


def test_remove_unexplained_removes_by_hand_attributes_only(app_server: AppUnderTest) -> None:
    app = app_server
    app.config_path.write_text(CONFIG_YAML.replace("    notify_channel: CACCESS\n", "    remove_unexplained: true\n"))
    laptop, db_box = app.devices["laptop"], app.devices["db"]
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    click(app, ActionId.APPROVE, request_id, BOB, channel, ts)
    app.builtin.set_attribute(db_box.id, PROD, True, actor=Actor("cli:someone"))
    app.builtin.set_attribute(db_box.id, PAIR, "rw", actor=Actor("cli:someone"))  # its profile only reports

    assert reconcile(app) == 2  # the one removed and the one left, in one DM
    assert written(app.builtin.get_attributes(db_box.id)) == {PAIR: "rw"}
    assert written(app.builtin.get_attributes(laptop.id)) == {PROD: True}  # the grant stays
    with app.ctx.db.session() as session:
        removed = audit.query(session, action=DRIFT_REMOVED)
    assert [(e.actor, e.target) for e in removed] == [(ACTOR_ID, f"device/{db_box.id}/attributes/{PROD}")]
    [text] = admin_dms(app)
    assert "2 device attributes held without an active grant; 1 of them removed already" in text
    assert "1 device attribute(s) held without an active grant" in str(status(app)["text"])  # the pair one
