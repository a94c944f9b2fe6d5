"""``accessbot serve`` in Socket Mode (``SLACK_APP_TOKEN`` set), as a subprocess, against a local Slack.

The app opens its connection through the fake Web API (``apps.connections.open`` with the app-level token) to
a local WebSocket server (``tests.fakes.socket_mode``), which then delivers envelopes as Slack does: a slash
command answered in its ack, and a whole request → approve flow whose grant lands on the built-in tailnet.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import Database
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.slack.ids import ActionId, CallbackId
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from tests.conftest import written
from tests.e2e.conftest import BOB, REQUESTER
from tests.e2e.test_access_flow import request_state
from tests.e2e.test_processes import app_env, run, wait_for_line
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_payloads import (
    block_actions_in_message,
    global_shortcut,
    parse_body,
    slash_command,
    view_submission,
)
from tests.fakes.socket_mode import FakeSocketMode

APP_TOKEN = "xapp-1-A0TEST-1-socketmodeapptoken0123456789"
WAIT = 30.0


@pytest.fixture
def socket_mode(fake_slack: FakeSlackAPI) -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as server:
        fake_slack.app_token = APP_TOKEN
        fake_slack.socket_url = server.url
        yield server


def wait_until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_in_socket_mode_answers_commands_and_runs_the_access_flow(
    db: Database,
    db_url: str,
    fake_slack: FakeSlackAPI,
    socket_mode: FakeSocketMode,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    laptop = BuiltinTailnet(db).add_device(
        name="rita-laptop.tail1.ts.net", user="req@example.com", os="macos", actor=Actor("cli:setup")
    )
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    env["SLACK_APP_TOKEN"] = APP_TOKEN
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "app", "serve", "--no-scheduler"]
    for proc in run(cmd, env, tmp_path):
        wait_for_line(proc, r"Slack Socket Mode")
        socket_mode.wait_connected()
        opened = fake_slack.calls("apps.connections.open")
        assert opened and opened[0].ok  # with the app-level token; every other call used the bot token

        # a slash command: the answer travels in the ack
        help_command = parse_body(slash_command("/posture", "help", REQUESTER, "C1", fake_slack.response_url_for("h")))
        ack = socket_mode.ack(socket_mode.send("slash_commands", help_command))
        assert "/posture" in ack["payload"]["text"]

        # shortcut → modal, acked within Slack's 3 seconds
        shortcut = parse_body(global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER))
        socket_mode.ack(socket_mode.send("interactive", shortcut))
        fake_slack.wait_for("views.open", timeout=WAIT)

        # submission → the approver's DM
        state = request_state(laptop.id, reason="incident 42")
        submission = parse_body(view_submission(CallbackId.REQUEST_MODAL, REQUESTER, state))
        ack = socket_mode.ack(socket_mode.send("interactive", submission))
        assert "errors" not in ack.get("payload", {}), ack
        dm = fake_slack.wait_for("chat.postMessage", lambda c: c.response.get("channel") == f"D{BOB}", timeout=WAIT)
        with db.session() as session:
            [request_id] = session.scalars(select(AccessRequestRow.id))

        # approve → the attribute is written with its expiry, then everyone is told
        channel, ts = dm.response["channel"], dm.response["ts"]
        approve = block_actions_in_message(
            ActionId.APPROVE,
            str(request_id),
            BOB,
            channel,
            ts,
            response_url=fake_slack.response_url_for("approve"),
            message=fake_slack.message(channel, ts),
        )
        socket_mode.ack(socket_mode.send("interactive", parse_body(approve)))
        wait_until(
            "the grant",
            lambda: BuiltinTailnet(db).get_attributes(laptop.id).attributes.get("custom:prodAccess") is True,
        )
        assert written(BuiltinTailnet(db).get_attributes(laptop.id)) == {"custom:prodAccess": True}

        def status(request_id: int = request_id) -> str | None:
            with db.session() as session:
                row = session.get(AccessRequestRow, request_id)
                return row.status if row is not None else None

        # the request is settled as granted in the transaction after the write (the process answers Slack meanwhile)
        wait_until("the request settled as granted", lambda: status() == RequestStatus.GRANTED)
        fake_slack.wait_for(
            "chat.postMessage",
            lambda c: c.response.get("channel") == f"D{REQUESTER}" and "granted until" in c.params.get("text", ""),
            timeout=WAIT,
        )
        assert socket_mode.unexpected == []

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0  # a clean stop


def test_a_wrong_app_token_is_refused_by_slack_and_serve_says_so(
    db_url: str,
    fake_slack: FakeSlackAPI,
    socket_mode: FakeSocketMode,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    env["SLACK_APP_TOKEN"] = "xapp-1-A0TEST-1-wrong"
    cmd = [sys.executable, "-m", "app", "serve", "--no-scheduler"]
    for proc in run(cmd, env, tmp_path):
        assert proc.wait(timeout=WAIT) == 2
        assert proc.stdout is not None
        output = proc.stdout.read()
        assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in output
        assert "Traceback" not in output and "xapp-1-A0TEST-1-wrong" not in output
        assert socket_mode.connections == 0
