"""The real entry points: ``accessbot serve`` and gunicorn ``app.wsgi:application``, as subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.conftest import REQUESTER
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_payloads import SlackEventsClient, slash_command


def app_env(db_url: str, fake: FakeSlackAPI, secret: str, token: str, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAILSCALE_"))}
    env.update(
        DATABASE_URL=db_url,
        ACCESSBOT_CONFIG=str(config),
        SLACK_BOT_TOKEN=token,
        SLACK_SIGNING_SECRET=secret,
        SLACK_API_URL=fake.base_url,
        NO_PROXY="127.0.0.1",
    )
    return env


def wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 30.0) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; output was:\n{''.join(seen)}")


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def check_serving(url: str, secret: str, fake: FakeSlackAPI) -> None:
    assert httpx.get(f"{url}/healthz", timeout=5).json()["database"] == "ok"
    with SlackEventsClient(url, secret) as slack:
        body = slash_command("/posture", "help", REQUESTER, "C1", fake.response_url_for("help"))
        response = slack.post(body)
        assert response.status_code == 200
        assert "/posture" in response.json()["text"]
        assert slack.post(body, signed=False).status_code == 401


def test_accessbot_serve_http_mode(
    db_url: str,
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", "0", "--no-scheduler"]
    for proc in run(cmd, env, tmp_path):
        match = wait_for_line(proc, r"HTTP on 127\.0\.0\.1:(\d+)")
        assert match.group(1) != "3000"  # --port 0 picks a free port; it is not "unset" ($PORT, default 3000)
        check_serving(f"http://127.0.0.1:{match.group(1)}", slack_signing_secret, fake_slack)
        assert fake_slack.calls("auth.test")  # the bot token was verified at start
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_serve_names_missing_settings(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAILSCALE_"))}
    env["DATABASE_URL"] = db_url
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_serves_the_wsgi_application(
    db_url: str,
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    cmd = [gunicorn, "--bind", "127.0.0.1:0", "--workers", "1", "--threads", "4", "app.wsgi:application"]
    for proc in run(cmd, env, Path(__file__).resolve().parents[2]):
        match = wait_for_line(proc, r"Listening at: http://127\.0\.0\.1:(\d+)")
        wait_for_line(proc, r"Booting worker")
        deadline = time.monotonic() + 20
        url = f"http://127.0.0.1:{match.group(1)}"
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        check_serving(url, slack_signing_secret, fake_slack)
