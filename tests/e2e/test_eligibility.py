"""Device eligibility and identity binding end to end: signed payloads through the real Bolt app, on the built-in
tailnet and through the Tailscale adapter (pointed at the built-in store's Tailscale-compatible API on 127.0.0.1).

The picker offers only eligible devices, a submission of someone else's device is refused on the device field,
the approval re-reads the device and the requester's login before the write, and the approver's DM says whose
device it is."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.access import identity
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from app.tailnet.tailscale import TailscaleTailnet
from tests.e2e.conftest import BOB, CONFIG_YAML, REQUESTER, AppUnderTest, RecordingTailnet, settle
from tests.e2e.test_access_flow import click, dm_message, form_state, only_request_id, open_modal, submit
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_payloads import SlackEventsClient, block_suggestion

EXTRA_PROFILES = """
  - id: tagged
    description: Database hosts
    attribute: custom:dbAccess
    max_duration: 1h
    approvers: [bob@example.com]
    devices: {own_or_tagged: ["tag:prod"]}
  - id: anydev
    description: Any device
    attribute: custom:anyAccess
    max_duration: 1h
    approvers: [bob@example.com]
    devices: any
"""


def with_profiles(app: AppUnderTest) -> None:
    """Add an ``own_or_tagged`` and an ``any`` profile to the running app's config (re-read on change)."""
    app.config_path.write_text(app.config_path.read_text() + EXTRA_PROFILES)
    os.utime(app.config_path, ns=(1, 10**18))


def offered(app: AppUnderTest, view: dict[str, Any], typed: str = "") -> dict[str, list[str]]:
    """The picker's answer as {group label: [device ids]} ("" for an answer without groups)."""
    answer = app.slack.post(block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, typed, REQUESTER, view=view))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if "options" in body:
        return {"": [o["value"] for o in body["options"]]}
    return {g["label"]["text"]: [o["value"] for o in g["options"]] for g in body["option_groups"]}


def device_hint(view: dict[str, Any]) -> str | None:
    block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.DEVICE)
    return (block.get("hint") or {}).get("text")


def dm_text(app: AppUnderTest, user: str = BOB) -> str:
    return json.dumps(app.fake.message(*dm_message(app, user))["blocks"])


def test_the_picker_offers_only_the_devices_each_profile_allows(app_server: AppUnderTest) -> None:
    app = app_server
    with_profiles(app)
    laptop, db, bobs = (app.devices[n].id for n in ("laptop", "db", "bobs"))
    view = open_modal(app)  # prod: devices own (the default)
    assert device_hint(view) == "Only your own devices (registered with your Tailscale login) can get this access."
    assert offered(app, view) == {"Your devices": [laptop]}
    assert offered(app, view, "db-prod") == {"": []}
    assert offered(app, view, "bob") == {"": []}

    view = open_modal(app, profile="tagged")
    assert device_hint(view) == "Your own devices, or devices tagged tag:prod."
    assert offered(app, view) == {"Your devices": [laptop], "Tagged devices": [db]}
    assert offered(app, view, "tag:pr") == {"Tagged devices": [db]}
    assert offered(app, view, "bob") == {"": []}

    view = open_modal(app, profile="anydev")
    assert device_hint(view) is None
    assert offered(app, view) == {"Your devices": [laptop], "Other devices": sorted([bobs, db], key=name_of(app))}


def name_of(app: AppUnderTest) -> Any:
    names = {d.id: d.name for d in app.devices.values()}
    return lambda device_id: names[device_id]


def test_submitting_someone_elses_device_is_refused_with_the_reason_and_nothing_is_stored(
    app_server: AppUnderTest,
) -> None:
    app = app_server
    view = open_modal(app)
    answer = submit(app, view, form_state(app, device="bobs")).json()
    assert answer["response_action"] == "errors"
    assert answer["errors"][BlockId.DEVICE] == (
        "Only your own devices can be chosen for Production access; bob-desktop belongs to bob@example.com "
        "(your Tailscale login is req@example.com)."
    )
    answer = submit(app, view, form_state(app, device="db")).json()
    assert "db-prod-1 belongs to the tags tag:prod" in answer["errors"][BlockId.DEVICE]
    assert not app.fake.calls("chat.postMessage")
    from app.access.queries import count_requests

    assert count_requests(app.ctx.db, RequestStatus.PENDING) == 0


def test_the_approver_dm_says_whose_device_it_is(app_server: AppUnderTest) -> None:
    app = app_server
    with_profiles(app)
    view = open_modal(app)
    assert submit(app, view, form_state(app)).text == ""
    assert "rita-laptop.tail1.ts.net, macos\\nreq@example.com (the requester's own device)" in dm_text(app)

    app.fake.reset()
    view = open_modal(app, profile="anydev")
    assert submit(app, view, form_state(app, device="bobs", profile="anydev")).text == ""
    assert "(not the requester's: owned by bob@example.com)" in dm_text(app)

    app.fake.reset()
    view = open_modal(app, profile="tagged")
    assert submit(app, view, form_state(app, device="db", profile="tagged")).text == ""
    assert "(not the requester's: owned by tag:prod)" in dm_text(app)  # a tagged device belongs to its tags


def test_a_linked_login_decides_which_devices_are_own_and_is_stored(app_server: AppUnderTest) -> None:
    app = app_server
    github = app.builtin.add_device(
        name="rita-gh.tail1.ts.net", user="rita@github", os="linux", actor=Actor("cli:setup")
    )
    app.ctx.devices.refresh()
    identity.link(app.ctx.db, REQUESTER, "Rita@GitHub", by="cli:ops", at=app.clock())
    app.clock.advance(seconds=31)  # another process linked it: the picker's map is reloaded within 30 s
    view = open_modal(app)
    assert offered(app, view) == {"Your devices": [github.id]}
    refused = submit(app, view, form_state(app)).json()["errors"][BlockId.DEVICE]
    assert "rita-laptop belongs to req@example.com (your Tailscale login is rita@github)" in refused
    state = form_state(app)
    state[BlockId.DEVICE][ActionId.DEVICE_SELECT]["selected_option"]["value"] = github.id
    assert submit(app, view, state).text == ""
    request = app.ctx.access.get(only_request_id(app))
    assert request.requester_login == "rita@github"
    assert "rita@github (the requester's own device)" in dm_text(app)


def test_the_approval_rechecks_eligibility_before_the_write(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app)
    assert submit(app, view, form_state(app)).text == ""
    request_id = only_request_id(app)
    identity.link(app.ctx.db, REQUESTER, "someone-else@example.com", by="cli:ops", at=app.clock())
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    request = app.ctx.access.get(request_id)
    assert request.status == RequestStatus.FAILED
    assert request.last_error is not None and request.last_error.startswith("the device is not eligible: ")
    assert app.tailnet.writes == []
    assert "rita-laptop belongs to req@example.com" in dm_text(app)  # the approvers see why, with Retry

    identity.unlink(app.ctx.db, REQUESTER, by="cli:ops", at=app.clock())
    assert click(app, ActionId.RETRY, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert len(app.tailnet.writes) == 1


def test_a_second_slack_account_of_the_requester_cannot_approve(app_server: AppUnderTest) -> None:
    app = app_server
    view = open_modal(app)
    assert submit(app, view, form_state(app)).text == ""
    request_id = only_request_id(app)
    identity.link(app.ctx.db, BOB, "req@example.com", by="cli:ops", at=app.clock())
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.PENDING
    told = [c.params.get("text", "") for c in app.fake.calls("chat.postEphemeral")]
    assert any("it is your own" in t for t in told), told


# -- through the Tailscale adapter ---------------------------------------------------------------------------


@pytest.fixture
def adapter_app(
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    db: Database,
    db_url: str,
    clock: FrozenClock,
    tmp_path: Path,
) -> Iterator[AppUnderTest]:
    """The Slack app on the Tailscale adapter, which talks to the built-in store's API over HTTP."""
    from app import bootstrap
    from app.config.settings import Settings
    from app.config.source import ConfigSource
    from app.slack.client import slack_client
    from app.web.server import make_server

    config_path = tmp_path / "accessbot.yml"
    config_path.write_text(
        CONFIG_YAML.split("  - id: gated")[0].replace("policy_file: policy.hujson\n", "") + EXTRA_PROFILES
    )
    builtin = BuiltinTailnet(db, clock=clock)
    owner = Actor("cli:setup")
    devices = {
        "laptop": builtin.add_device(name="rita-laptop.tail1.ts.net", user="req@example.com", os="macos", actor=owner),
        "db": builtin.add_device(
            name="db-prod-1.tail1.ts.net", user="ops@example.com", os="linux", tags=["tag:prod"], actor=owner
        ),
        "bobs": builtin.add_device(name="bob-desktop.tail1.ts.net", user="bob@example.com", actor=owner),
    }
    _, key = AuthStore(db, clock=clock).create_api_key(actor=owner, description="eligibility e2e")
    api = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
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
    with SlackEventsClient(url, slack_signing_secret, settle=lambda: settle(ctx)) as slack:
        yield AppUnderTest(
            url, slack, fake_slack, ctx, tailnet, builtin, clock, devices, config_path, services.health()
        )
    settle(ctx)
    for running in (server, api):
        running.shutdown()
        running.server_close()
    adapter.close()


def test_through_the_adapter_picker_submit_and_approval_recheck(adapter_app: AppUnderTest) -> None:
    app = adapter_app
    laptop, db = app.devices["laptop"].id, app.devices["db"].id
    view = open_modal(app, profile="tagged")
    assert offered(app, view) == {"Your devices": [laptop], "Tagged devices": [db]}  # tags as the API reports them
    refused = submit(app, view, form_state(app, device="bobs", profile="tagged")).json()["errors"][BlockId.DEVICE]
    assert "bob-desktop belongs to bob@example.com" in refused

    assert submit(app, view, form_state(app, profile="tagged")).text == ""
    request_id = only_request_id(app)
    identity.link(app.ctx.db, REQUESTER, "rita@github", by="cli:ops", at=app.clock())
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    failed = app.ctx.access.get(request_id)
    assert failed.status == RequestStatus.FAILED, failed
    assert "rita-laptop belongs to req@example.com (your Tailscale login is rita@github)" in (failed.last_error or "")
    assert "custom:dbAccess" not in app.builtin.get_attributes(laptop).attributes

    identity.unlink(app.ctx.db, REQUESTER, by="cli:ops", at=app.clock())
    assert click(app, ActionId.RETRY, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    assert app.builtin.get_attributes(laptop).attributes["custom:dbAccess"] is True
