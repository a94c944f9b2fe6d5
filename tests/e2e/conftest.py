"""End-to-end fixtures: a fake Slack Web API with a small workspace, and the signing secret.

The tests send signed Slack payloads (``tests.fakes.slack_payloads``) to the real Bolt app over HTTP;
the app calls the Web API at ``fake_slack.base_url`` with ``fake_slack.token``.

Workspace:
    UREQ   req@example.com    the requester
    UBOB   bob@example.com    approver, in @sre (S0SRE)
    UCAROL carol@example.com  approver, in @sre (S0SRE)
    UEVE   eve@example.com    an outsider (no role)
    UADMIN admin@example.com  accessbot admin
    UBOT                      the bot itself (added by FakeSlackAPI)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.db import Database
from app.slack.client import slack_client
from app.slack.context import SlackContext
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.web.health import HealthCheck
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fakes.slack_payloads import SlackEventsClient

SLACK_SIGNING_SECRET = "e2e-signing-secret-0123456789abcdef"
SLACK_BOT_TOKEN = DEFAULT_TOKEN

REQUESTER = "UREQ"
BOB = "UBOB"
CAROL = "UCAROL"
EVE = "UEVE"
ADMIN = "UADMIN"
SRE_GROUP_ID = "S0SRE"
SRE_HANDLE = "sre"

USERS: dict[str, tuple[str, str, str]] = {
    REQUESTER: ("req@example.com", "req", "Rita Requester"),
    BOB: ("bob@example.com", "bob", "Bob Approver"),
    CAROL: ("carol@example.com", "carol", "Carol Approver"),
    EVE: ("eve@example.com", "eve", "Eve Outsider"),
    ADMIN: ("admin@example.com", "admin", "Ada Admin"),
}


@pytest.fixture
def slack_signing_secret() -> str:
    """The signing secret the app verifies and ``SlackEventsClient`` signs with."""
    return SLACK_SIGNING_SECRET


@pytest.fixture
def slack_bot_token() -> str:
    """The bot token the fake Web API accepts."""
    return SLACK_BOT_TOKEN


@pytest.fixture
def fake_slack(slack_bot_token: str) -> Iterator[FakeSlackAPI]:
    """A started fake Slack Web API with the workspace above; stopped after the test."""
    with FakeSlackAPI(token=slack_bot_token) as fake:
        for user_id, (email, name, real_name) in USERS.items():
            fake.add_user(user_id, email, name, real_name)
        fake.add_group(SRE_GROUP_ID, SRE_HANDLE, [BOB, CAROL], name="SRE")
        fake.add_channel("CACCESS", "access-requests")
        yield fake


# ----------------------------------------------------------------------------------------------------
# The app under test: the real Bolt app over HTTP on 127.0.0.1, the built-in tailnet, a fake Slack Web API.
# ----------------------------------------------------------------------------------------------------

POLICY_HUJSON = """{
  // the posture the gated profile requires
  "postures": {
    "posture:trusted": ["huntress:firewallStatus == 'Enabled'", "node:os IN ['macos', 'linux']"],
  },
  "grants": [
    {"src": ["autogroup:member"], "dst": ["tag:prod"], "ip": ["*"], "srcPosture": ["posture:trusted"]},
  ],
}
"""

CONFIG_YAML = """
admins: [UADMIN]
policy_file: policy.hujson
request_timeout: 1h
reminder_before: 10m
profiles:
  - id: prod
    description: Production access
    attribute: custom:prodAccess
    max_duration: 4h
    durations: [30m, 1h, 4h, 8h]
    approvers: [bob@example.com, "@sre"]
    notify_channel: CACCESS
  - id: pair
    description: Paired change
    attribute: custom:pairAccess
    value: rw
    max_duration: 1h
    approvers: [bob@example.com, carol@example.com, admin@example.com]
    approvals_required: 2
  - id: gated
    description: Gated production
    attribute: custom:gatedAccess
    max_duration: 1h
    approvers: [bob@example.com]
    require_posture: posture:trusted
"""


class RecordingTailnet:
    """The built-in tailnet, recording when attribute writes happen and able to fail them."""

    def __init__(self, inner: BuiltinTailnet) -> None:
        self.inner = inner
        self.writes: list[tuple[float, str, str]] = []
        self.fail_with: Exception | None = None
        self.delay = 0.0
        """Seconds every attribute read, write and delete takes first (a slow tailnet)."""
        self._lock = threading.Lock()

    def set_attribute(self, device_id: str, key: str, value: Any, **kwargs: Any) -> None:
        time.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        self.inner.set_attribute(device_id, key, value, **kwargs)
        with self._lock:
            self.writes.append((time.time(), device_id, key))

    def get_attributes(self, device_id: str, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.get_attributes(device_id, **kwargs)

    def delete_attribute(self, device_id: str, key: str, **kwargs: Any) -> None:
        time.sleep(self.delay)
        self.inner.delete_attribute(device_id, key, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class AppUnderTest:
    """What an end-to-end test drives and inspects."""

    url: str
    slack: SlackEventsClient
    fake: FakeSlackAPI
    ctx: SlackContext
    tailnet: RecordingTailnet
    builtin: BuiltinTailnet
    clock: FrozenClock
    devices: dict[str, Device]
    config_path: Path
    health: HealthCheck


@pytest.fixture
def extra_settings() -> dict[str, str]:
    """More environment settings of ``app_server`` (a test module overrides this, e.g. an on-call provider's URL)."""
    return {}


@pytest.fixture
def app_server(
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    db: Database,
    db_url: str,
    clock: FrozenClock,
    tmp_path: Path,
    extra_settings: dict[str, str],
) -> Iterator[AppUnderTest]:
    """The accessbot Slack app served over HTTP, wired to ``fake_slack`` and the built-in tailnet."""
    from app import bootstrap
    from app.config.settings import Settings
    from app.config.source import ConfigSource
    from app.web.server import make_server

    config_path = tmp_path / "accessbot.yml"
    config_path.write_text(CONFIG_YAML)
    (tmp_path / "policy.hujson").write_text(POLICY_HUJSON)
    settings = Settings(  # type: ignore[call-arg]
        DATABASE_URL=db_url,
        ACCESSBOT_CONFIG=str(config_path),
        SLACK_BOT_TOKEN=slack_bot_token,
        SLACK_SIGNING_SECRET=slack_signing_secret,
        SLACK_API_URL=fake_slack.base_url,
        ACCESSBOT_SECRET_KEY="end-to-end credentials passphrase",
        **extra_settings,
    )
    builtin = BuiltinTailnet(db, clock=clock)
    owner = Actor("cli:setup")
    devices = {
        "laptop": builtin.add_device(
            name="rita-laptop.tail1.ts.net",
            user="req@example.com",
            os="macos",
            addresses=["100.64.0.10"],
            serial_numbers=["C02RITA"],
            actor=owner,
        ),
        "db": builtin.add_device(
            name="db-prod-1.tail1.ts.net",
            user="ops@example.com",
            os="linux",
            tags=["tag:prod"],
            addresses=["100.64.0.20"],
            actor=owner,
        ),
        "bobs": builtin.add_device(name="bob-desktop.tail1.ts.net", user="bob@example.com", os="windows", actor=owner),
    }
    tailnet = RecordingTailnet(builtin)
    services = bootstrap.build(
        settings,
        db=db,
        tailnet=tailnet,
        clock=clock,
        config=ConfigSource(config_path, min_interval=0),
        slack_client=slack_client(slack_bot_token, fake_slack.base_url),
    )
    ctx = services.slack
    ctx.devices.refresh()
    bolt_app = services.bolt_app()  # acknowledges first, as in production
    health = services.health(devices=True)
    server = make_server(services.slack_wsgi(bolt_app, health), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    fake_slack.reset()
    with SlackEventsClient(url, slack_signing_secret, settle=lambda: settle(ctx)) as slack:
        yield AppUnderTest(url, slack, fake_slack, ctx, tailnet, builtin, clock, devices, config_path, health)
    settle(ctx)
    server.shutdown()
    server.server_close()


def settle(ctx: SlackContext, timeout: float = 30.0) -> None:
    """Wait for the app's work after its acknowledgements (Bolt's listeners and the work pool)."""
    assert ctx.pools.settle(timeout), f"the app's background work did not finish within {timeout} s"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """``accessbot.yml`` (``CONFIG_YAML``) and its policy file in ``tmp_path``, for subprocesses."""
    path = tmp_path / "accessbot.yml"
    path.write_text(CONFIG_YAML)
    (tmp_path / "policy.hujson").write_text(POLICY_HUJSON)
    return path
