"""The request API as production serves it: ``accessbot serve`` as a subprocess, in HTTP mode (beside
``/slack/events``) and in Socket Mode (on the ``METRICS_PORT`` listener, the only one that mode has); a request by
API reaches the approver's DM in the fake Slack, sent by the serving process right after the commit."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from app.access.request_clients import RequestClients
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from tests.e2e.conftest import BOB, REQUESTER
from tests.e2e.test_processes import app_env, run, wait_for_line
from tests.e2e.test_socket_mode import APP_TOKEN, WAIT, socket_mode  # noqa: F401 - the Socket Mode fixture
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.socket_mode import FakeSocketMode


def token_for(db: Database) -> str:
    BuiltinTailnet(db).add_device(
        name="rita-laptop.tail1.ts.net", user="req@example.com", os="macos", actor=Actor("cli:setup")
    )
    clients = RequestClients(db, profile_ids=lambda: ["prod"])
    return clients.create(description="pipeline", requester_id=REQUESTER, profiles=["prod"], created_by="cli:t")[1]


def request_and_see_the_dm(base: str, token: str, fake: FakeSlackAPI) -> None:
    body = {"profile": "prod", "device": "rita-laptop", "duration": "1h", "reason": "deploy", "approvers": [BOB]}
    response = httpx.post(f"{base}/api/v1/requests", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    assert response.json()["origin"] == "api"
    fake.wait_for("chat.postMessage", lambda c: c.response.get("channel") == f"D{BOB}", timeout=WAIT)
    refused = httpx.post(f"{base}/api/v1/requests", json=body, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401


def test_serve_in_http_mode_serves_the_request_api(
    db: Database,
    db_url: str,
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    token = token_for(db)
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", "0", "--no-scheduler"]
    for proc in run(cmd, env, tmp_path):
        port = wait_for_line(proc, r"HTTP on 127\.0\.0\.1:(\d+)").group(1)
        request_and_see_the_dm(f"http://127.0.0.1:{port}", token, fake_slack)


def test_serve_in_socket_mode_serves_the_request_api_on_the_metrics_listener(
    db: Database,
    db_url: str,
    fake_slack: FakeSlackAPI,
    socket_mode: FakeSocketMode,  # noqa: F811 - the fixture imported above
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    token = token_for(db)
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    env.update(SLACK_APP_TOKEN=APP_TOKEN, METRICS_PORT="0")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    for proc in run([sys.executable, "-m", "app", "serve", "--no-scheduler"], env, tmp_path):
        match = wait_for_line(
            proc, r"metrics on port (\d+) of 127\.0\.0\.1 \(GET /metrics, /healthz, /api/v1/requests\)"
        )
        wait_for_line(proc, r"Slack Socket Mode")
        request_and_see_the_dm(f"http://127.0.0.1:{match.group(1)}", token, fake_slack)
