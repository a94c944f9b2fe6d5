"""What will this unlock, end to end: signed payloads through the real Bolt app, the approver's DM and the modal,
from the config's policy file (built-in tailnet) and from the tailnet's policy fetched through the Tailscale adapter
(pointed at the built-in store's Tailscale-compatible API on 127.0.0.1, with the policy endpoint beside it)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from app.tailnet.tailscale import TailscaleTailnet
from tests.e2e.conftest import BOB, CAROL, CONFIG_YAML, REQUESTER, AppUnderTest, RecordingTailnet, settle
from tests.e2e.test_access_flow import click, dm_message, form_state, only_request_id, open_modal, submit
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_payloads import SlackEventsClient, block_actions_in_view, select_state

UNLOCK_POLICY: dict[str, Any] = {
    "postures": {
        "posture:prod": ["custom:prodAccess == true", "node:os IN ['macos', 'linux']"],
        "posture:db": ["custom:prodAccess == true", "huntress:firewallStatus == 'Enabled'"],
    },
    "grants": [
        {"src": ["group:eng"], "dst": ["tag:prod"], "ip": ["tcp:443", "tcp:22"], "srcPosture": ["posture:prod"]},
        {"src": ["group:eng"], "dst": ["tag:db"], "ip": ["tcp:5432"], "srcPosture": ["posture:db"]},
    ],
    "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:legacy:22"], "srcPosture": ["posture:prod"]}],
}
POLICY_HUJSON = "// the tailnet's policy, as an admin keeps it\n" + json.dumps(UNLOCK_POLICY, indent=2)


def text_of(blocks: Iterable[dict[str, Any]]) -> str:
    return json.dumps(list(blocks))


def use_policy_file(app: AppUnderTest) -> None:
    """Point the running app's config at the unlock policy (the config is re-read on change)."""
    (app.config_path.parent / "unlock.hujson").write_text(POLICY_HUJSON)
    app.config_path.write_text(
        app.config_path.read_text().replace("policy_file: policy.hujson", "policy_file: unlock.hujson")
    )
    os.utime(app.config_path, ns=(1, 10**18))


def approver_dm_blocks(app: AppUnderTest, user: str = BOB) -> str:
    channel, ts = dm_message(app, user)
    return text_of(app.fake.message(channel, ts)["blocks"])


def test_the_modal_shows_what_the_profile_opens_on_the_chosen_device(app_server: AppUnderTest) -> None:
    app = app_server
    use_policy_file(app)
    view = open_modal(app)
    assert "give you access" not in text_of(view["blocks"])  # no device chosen yet
    laptop = app.devices["laptop"].id
    body = block_actions_in_view(
        ActionId.DEVICE_SELECT,
        BlockId.DEVICE,
        REQUESTER,
        selected_value=laptop,
        action_type="external_select",
        view=view,
        state_values={BlockId.PROFILE: {ActionId.PROFILE_SELECT: select_state("prod")}},
    )
    assert app.slack.post(body).status_code == 200
    refreshed = app.fake.view(view["id"])
    blocks = refreshed["blocks"]
    device_at = next(i for i, b in enumerate(blocks) if b.get("block_id") == BlockId.DEVICE)
    assert blocks[device_at]["element"]["initial_option"]["value"] == laptop  # the choice is kept
    section = blocks[device_at + 1]["text"]["text"]
    assert section.startswith("*This would give you access to:*")
    assert "`tag:prod` on `tcp:443`, `tcp:22` (grants[0], from `group:eng`)" in section
    assert "`tag:legacy:22` (acls[0], from `group:eng`)" in section
    assert "huntress:firewallStatus is not set" in text_of(blocks)  # tag:db still needs the firewall


def test_the_approver_dm_lists_the_destinations_until_the_request_is_decided(app_server: AppUnderTest) -> None:
    app = app_server
    use_policy_file(app)
    view = open_modal(app)
    assert submit(app, view, form_state(app)).text == ""
    request_id = only_request_id(app)
    dm = approver_dm_blocks(app)
    assert "This grants access to:" in dm and "`tag:prod` on `tcp:443`, `tcp:22`" in dm
    assert "Still shut with `custom:prodAccess = true`" in dm and "posture:db: huntress:firewallStatus" in dm
    requester_copy = json.dumps(app.fake.message(*dm_message(app, REQUESTER))["blocks"])
    assert "grants access" not in requester_copy  # the section is for the approvers

    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert app.builtin.get_attributes(app.devices["laptop"].id).attributes["custom:prodAccess"] is True
    decided = approver_dm_blocks(app)
    assert "Access granted until" in decided and "grants access" not in decided


def test_an_attribute_nothing_uses_is_flagged_to_the_approvers(app_server: AppUnderTest) -> None:
    app = app_server
    use_policy_file(app)
    view = open_modal(app, profile="pair")
    assert submit(app, view, form_state(app, profile="pair", approvers=(BOB, CAROL))).text == ""
    for approver in (BOB, CAROL):
        assert "Nothing in the tailnet policy uses `custom:pairAccess`" in approver_dm_blocks(app, approver)


# -- through the Tailscale adapter: the policy fetched from the API ------------------------------------------


class PolicyEndpoint:
    """``GET /api/v2/tailnet/-/acl`` as Tailscale answers it (JSON; 401 without the token; ``fail_with`` a
    status to refuse), every other path served by the built-in store's Tailscale-compatible API."""

    def __init__(self, inner: Any, token: str, policy: dict[str, Any]) -> None:
        self.inner = inner
        self.authorization = f"Bearer {token}"
        self.policy = policy
        self.fail_with: int | None = None
        self.fetches = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/api/v2/tailnet/-/acl":
            return self.inner(environ, start_response)  # type: ignore[no-any-return]
        self.fetches += 1
        if environ.get("HTTP_AUTHORIZATION") != self.authorization:
            return _answer(start_response, 401, {"message": "API token invalid"})
        if self.fail_with is not None:
            return _answer(start_response, self.fail_with, {"message": "internal error"})
        return _answer(start_response, 200, self.policy)


def _answer(start_response: Any, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 401: "Unauthorized", 500: "Internal Server Error"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture
def adapter_app(
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    db: Database,
    db_url: str,
    clock: FrozenClock,
    tmp_path: Path,
) -> Iterator[tuple[AppUnderTest, PolicyEndpoint]]:
    """The Slack app on the Tailscale adapter, no ``policy_file`` in the config: the policy comes from the API."""
    from app import bootstrap
    from app.config.settings import Settings
    from app.config.source import ConfigSource
    from app.slack.client import slack_client
    from app.web.server import make_server

    config_path = tmp_path / "accessbot.yml"
    config = CONFIG_YAML.split("  - id: gated")[0]  # a posture-gated profile needs a policy_file
    config_path.write_text(config.replace("policy_file: policy.hujson\n", ""))
    builtin = BuiltinTailnet(db, clock=clock)
    owner = Actor("cli:setup")
    laptop = builtin.add_device(
        name="rita-laptop.tail1.ts.net", user="req@example.com", os="macos", addresses=["100.64.0.10"], actor=owner
    )
    _, key = AuthStore(db, clock=clock).create_api_key(actor=owner, description="unlock e2e")
    endpoint = PolicyEndpoint(make_api(builtin, db, clock=clock), key, UNLOCK_POLICY)
    api = make_server(endpoint, "127.0.0.1", 0)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    adapter = TailscaleTailnet(
        db, api_url=f"http://127.0.0.1:{api.server_port}", api_key=key, clock=clock, sleep=lambda _s: None
    )
    settings = Settings(  # type: ignore[call-arg]
        DATABASE_URL=db_url,
        ACCESSBOT_CONFIG=str(config_path),
        SLACK_BOT_TOKEN=slack_bot_token,
        SLACK_SIGNING_SECRET=slack_signing_secret,
        SLACK_API_URL=fake_slack.base_url,
        ACCESSBOT_SECRET_KEY="end-to-end credentials passphrase",
    )
    tailnet = RecordingTailnet(adapter)  # type: ignore[arg-type]
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
    server = make_server(services.slack_wsgi(services.bolt_app()), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    fake_slack.reset()
    health = services.health(devices=True)
    with SlackEventsClient(url, slack_signing_secret, settle=lambda: settle(ctx)) as slack:
        devices = {"laptop": laptop}
        yield AppUnderTest(url, slack, fake_slack, ctx, tailnet, builtin, clock, devices, config_path, health), endpoint
    settle(ctx)
    for running in (server, api):
        running.shutdown()
        running.server_close()
    adapter.close()


def test_through_the_adapter_the_tailnet_policy_is_fetched_once_and_listed(
    adapter_app: tuple[AppUnderTest, PolicyEndpoint],
) -> None:
    app, endpoint = adapter_app
    view = open_modal(app)
    assert submit(app, view, form_state(app)).text == ""
    first = only_request_id(app)
    dm = approver_dm_blocks(app)
    assert "This grants access to:" in dm and "`tag:prod` on `tcp:443`, `tcp:22`" in dm
    assert "`tag:legacy:22` (acls[0]" in dm
    assert endpoint.fetches == 1

    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, first, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(first).status == RequestStatus.GRANTED  # written through the adapter
    assert app.builtin.get_attributes(app.devices["laptop"].id).attributes["custom:prodAccess"] is True
    assert "grants access" not in approver_dm_blocks(app)
    assert endpoint.fetches == 1  # cached: the decided copy needed no policy, the TTL has not passed


def test_through_the_adapter_a_policy_the_api_refuses_only_leaves_the_section_out(
    adapter_app: tuple[AppUnderTest, PolicyEndpoint],
) -> None:
    app, endpoint = adapter_app
    endpoint.fail_with = 500
    view = open_modal(app)
    assert submit(app, view, form_state(app)).text == ""
    dm = approver_dm_blocks(app)
    assert "Approve" in dm and "grants access" not in dm  # the request is reviewed as before
    assert endpoint.fetches >= 1
