"""End to end: the request API (``/api/v1/requests``) on the same listener as ``/slack/events``.

A script asks for access with a request-client token; the approvers get their DMs in the fake Slack; a signed
Slack click approves; the attribute is written. And the API's refusals: 401 for no, unknown, malformed or revoked
tokens, 403 outside the client's scope, 400/413/415 for bad bodies, 404 for another client's request, no route
that approves. Then the same request through the Tailscale adapter (the built-in tailnet's API on a loopback port).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.people import StaticDirectory
from app.access.request_clients import RequestClient, RequestClients
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.core.timefmt import format_rfc3339
from app.db import Database, audit
from app.db.tables.access import RequestStatus
from app.request_api.app import RequestApi, with_request_api
from app.slack.ids import ActionId
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from app.web.ops import not_found
from tests.clitools import cli_environment, invoker, ok
from tests.conftest import written
from tests.e2e.conftest import BOB, CAROL, REQUESTER, SLACK_BOT_TOKEN, AppUnderTest, settle
from tests.e2e.test_access_flow import click, dm_message
from tests.integration.vendor_contract import tailscale_remote
from tests.serving import serving

API = "/api/v1/requests"


def new_client(app: AppUnderTest, *, requester: str | None = None, profiles: tuple[str, ...] = ()) -> tuple[str, str]:
    """(client id, token) of a new request client."""
    clients = RequestClients(app.ctx.db, clock=app.clock, profile_ids=lambda: ["prod", "pair", "gated"])
    client, token = clients.create(
        description="deploy bot", requester_id=requester, profiles=profiles, created_by="cli:test"
    )
    return client.id, token


def post(app: AppUnderTest, path: str, token: str | None, body: Any = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers |= kw.pop("headers", {})
    if body is not None and "content" not in kw:
        kw["json"] = body
    return httpx.post(f"{app.url}{path}", headers=headers, timeout=10, **kw)


def get(app: AppUnderTest, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{app.url}{path}", headers=headers, timeout=10)


def audit_json(app: AppUnderTest, action: str) -> list[dict[str, Any]]:
    with app.ctx.db.session() as session:
        return [e.to_json() for e in audit.query(session, action=action)]


def ask(**fields: Any) -> dict[str, Any]:
    body = {
        "requester": REQUESTER,
        "profile": "prod",
        "device": "rita-laptop",
        "duration": "1h",
        "reason": "deploy from the pipeline",
    }
    return {k: v for k, v in (body | fields).items() if v is not None}


def test_a_request_from_the_api_is_approved_in_slack_and_written(app_server: AppUnderTest) -> None:
    app = app_server
    client_id, token = new_client(app)
    response = post(app, API, token, ask())
    assert response.status_code == 201, response.text
    created = response.json()
    request_id = created["id"]
    assert response.headers["Location"] == f"{API}/{request_id}"
    assert (created["status"], created["origin"], created["request_client"]) == ("pending", "api", client_id)
    assert ("api", client_id) in [
        (e["details"].get("origin"), e["details"].get("request_client")) for e in audit_json(app, "Access requested")
    ]
    assert created["requester"] == REQUESTER and sorted(created["approvers"]) == [BOB, CAROL]
    settle(app.ctx)  # the DMs go out right after the commit, on the work pool
    channel, ts = dm_message(app, BOB)
    assert dm_message(app, CAROL) and dm_message(app, REQUESTER)
    dm = next(c for c in app.fake.calls("chat.postMessage") if c.response.get("ts") == ts)
    assert ActionId.APPROVE in json.dumps(dm.params["blocks"])
    assert "deploy from the pipeline" in json.dumps(dm.params["blocks"])
    assert f"via the request API (client `{client_id}`)" in json.dumps(dm.params["blocks"])

    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    laptop = app.devices["laptop"]
    assert written(app.builtin.get_attributes(laptop.id)) == {"custom:prodAccess": True}
    shown = get(app, f"{API}/{request_id}", token)
    assert shown.status_code == 200
    assert (shown.json()["status"], shown.json()["approvals"]) == ("granted", [BOB])
    assert shown.headers["Content-Type"] == "application/json"
    # a granted request cannot be cancelled through the API
    refused = post(app, f"{API}/{request_id}/cancel", token)
    assert refused.status_code == 409 and "already approved and granted" in refused.json()["message"]


def test_a_pinned_requester_needs_no_name_and_cannot_be_changed(app_server: AppUnderTest) -> None:
    app = app_server
    _, token = new_client(app, requester=REQUESTER, profiles=("prod",))
    response = post(app, API, token, ask(requester=None, approvers=[BOB]))
    assert response.status_code == 201, response.text
    assert (response.json()["requester"], response.json()["approvers"]) == (REQUESTER, [BOB])
    other = post(app, API, token, ask(requester=BOB))
    assert other.status_code == 403 and f"only as {REQUESTER}" in other.json()["message"]
    scoped = post(app, API, token, ask(requester=None, profile="pair"))
    assert scoped.status_code == 403 and "may not request 'pair'" in scoped.json()["message"]


def test_unknown_malformed_missing_and_revoked_tokens_get_401(app_server: AppUnderTest) -> None:
    app = app_server
    client_id, token = new_client(app)
    for sent in (
        None,
        "abrc-rcaaaaaaaaaaaa-" + "x" * 32,
        "not-a-token",
        token[:-1] + ("A" if token[-1] != "A" else "B"),
    ):
        response = post(app, API, sent, ask())
        assert response.status_code == 401, (sent, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "message" in response.json()
    basic = post(app, API, None, ask(), headers={"Authorization": f"Basic {token}"})
    assert basic.status_code == 401
    assert post(app, API, token, ask()).status_code == 201
    RequestClients(app.ctx.db, clock=app.clock, profile_ids=list).revoke(client_id, actor="cli:test")
    revoked = post(app, API, token, ask())
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
    assert get(app, f"{API}/1", token).status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, "must be a JSON object"),
        ({"content": b"profile=prod", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
        ({"content": b"{}" + b" " * (20 << 10), "headers": {"Content-Type": "application/json"}}, 413, "larger than"),
        ({"content": b"x" * (2 << 20), "headers": {"Content-Type": "application/json"}}, 413, "larger than"),
    ],
    ids=["malformed", "not-an-object", "form", "over-16KiB", "over-the-server-cap"],
)
def test_bad_bodies(app_server: AppUnderTest, kwargs: dict[str, Any], status: int, fragment: str) -> None:
    _, token = new_client(app_server)
    response = post(app_server, API, token, **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]


def test_field_errors_are_400_with_errors_by_field_and_store_nothing(app_server: AppUnderTest) -> None:
    app = app_server
    _, token = new_client(app)
    typed = post(app, API, token, {"profile": 3, "duration": True, "approver": [BOB], "reason": "r", "device": "x"})
    assert typed.status_code == 400
    assert set(typed.json()["errors"]) == {"profile", "duration", "approver"}
    assert typed.json()["errors"]["approver"] == "unknown field"
    flow = post(app, API, token, ask(duration="2h", device="no-such-box", reason=" "))
    assert flow.status_code == 400
    errors = flow.json()["errors"]
    assert set(errors) == {"duration", "device", "reason"}
    assert "Choose one of the offered durations" in errors["duration"] and "no device" in errors["device"]
    no_requester = post(app, API, token, ask(requester=None))
    assert no_requester.status_code == 400 and "requester" in no_requester.json()["errors"]
    stranger = post(app, API, token, ask(requester="UNOBODY"))
    assert stranger.status_code == 400 and "not a Slack user" in stranger.json()["errors"]["requester"]
    assert post(app, API, token, ask(profile="nope")).json()["errors"] == {
        "profile": "No profile 'nope'; profiles: prod, pair, gated."
    }
    assert app.fake.calls("chat.postMessage") == []


def test_cancel_is_limited_to_the_clients_own_requests_and_updates_the_dms(app_server: AppUnderTest) -> None:
    app = app_server
    owner_id, owner = new_client(app)
    _, other = new_client(app)
    request_id = post(app, API, owner, ask()).json()["id"]
    settle(app.ctx)
    channel, ts = dm_message(app, BOB)

    for path in (f"{API}/{request_id}", f"{API}/999"):
        hidden = get(app, path, other)
        assert hidden.status_code == 404 and "does not exist" in hidden.json()["message"]
    assert post(app, f"{API}/{request_id}/cancel", other).status_code == 404
    assert app.ctx.access.get(request_id).status == RequestStatus.PENDING

    cancelled = post(app, f"{API}/{request_id}/cancel", owner)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["ended_by"]) == ("cancelled", f"client:{owner_id}")
    settle(app.ctx)
    update = [c for c in app.fake.calls("chat.update") if c.params["ts"] == ts][-1]
    assert ActionId.APPROVE not in json.dumps(update.params["blocks"])
    assert "Request cancelled by" in json.dumps(update.params["blocks"])
    # a click on the stale button changes nothing
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.CANCELLED
    said = [c.params.get("text", "") for c in app.fake.calls() if c.method in ("chat.postEphemeral", "response_url")]
    assert any(f"Request {request_id} was cancelled before it was granted" in text for text in said), said
    assert app.tailnet.writes == []
    again = post(app, f"{API}/{request_id}/cancel", owner)
    assert again.status_code == 409 and "cancelled" in again.json()["message"]


def test_there_is_no_route_that_approves(app_server: AppUnderTest) -> None:
    app = app_server
    _, token = new_client(app)
    request_id = post(app, API, token, ask()).json()["id"]
    for path in (f"{API}/{request_id}/approve", f"{API}/{request_id}/deny", "/api/v1/approvals", "/api/v2/requests"):
        response = post(app, path, token, {})
        assert response.status_code == 404, path
        assert response.json() == {"message": f"no route for {path}"}
    wrong = get(app, API, token)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert httpx.delete(f"{app.url}{API}/{request_id}", timeout=10).status_code == 405
    assert app.ctx.access.get(request_id).status == RequestStatus.PENDING
    assert httpx.get(f"{app.url}/healthz", timeout=10).status_code == 200  # the listener's other routes stay


def test_a_request_through_the_tailscale_adapter(db: Database, clock: FrozenClock) -> None:
    builtin = BuiltinTailnet(db, clock=clock)
    device = builtin.add_device(name="rita-laptop", user="req@example.com", os="macos", actor=Actor("cli:t"))
    config = Config.model_validate(
        {
            "request_timeout": "1h",
            "profiles": [
                {"id": "prod", "attribute": "custom:prodAccess", "max_duration": "4h", "approvers": [BOB]},
            ],
        }
    )
    directory = StaticDirectory({REQUESTER: "req@example.com", BOB: "bob@example.com"}, {})
    clients = RequestClients(db, clock=clock, profile_ids=lambda: ["prod"])
    client, token = clients.create(description="ci", requester_id=None, profiles=(), created_by="cli:test")
    assert isinstance(client, RequestClient)
    announced: list[int] = []
    with tailscale_remote(db, builtin, clock) as remote:
        service = AccessService(db, remote, lambda: config, directory, clock=clock)
        api = RequestApi(service, clients, clock=clock, announce=announced.append)
        with serving(with_request_api(not_found, api)) as url:
            response = httpx.post(
                f"{url}{API}", headers={"Authorization": f"Bearer {token}"}, json=ask(device="rita-laptop"), timeout=10
            )
            assert response.status_code == 201, response.text
            request_id = response.json()["id"]
            assert announced == [request_id]
            assert [c.last_used_at for c in clients.every()] == [clock()]
            assert response.json()["device"]["id"] == device.id
            approved = service.approve(request_id, BOB)
            assert approved.status == RequestStatus.GRANTED
            assert builtin.get_attributes(device.id).expiries["custom:prodAccess"] == clock() + timedelta(hours=1)
            shown = httpx.get(f"{url}{API}/{request_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert shown.json()["status"] == "granted"


def test_guessing_tokens_is_capped_per_address(app_server: AppUnderTest) -> None:
    app = app_server
    _, token = new_client(app)
    for attempt in range(10):
        assert post(app, API, f"abrc-rcguessguess{attempt:02d}-" + "x" * 32, ask()).status_code == 401
    limited = post(app, API, token, ask())  # even a valid token, from that address, for a while
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "too many failed authentication attempts" in limited.json()["message"]
    assert app.fake.calls("chat.postMessage") == []


def test_a_scheduled_request_from_the_api_can_be_cancelled_before_its_start(app_server: AppUnderTest) -> None:
    app = app_server
    _, token = new_client(app)
    start = app.clock() + timedelta(hours=2)
    bad = post(app, API, token, ask(starts_at="tomorrow"))
    assert bad.status_code == 400 and "invalid timestamp" in bad.json()["errors"]["starts_at"]
    past = post(app, API, token, ask(starts_at=format_rfc3339(app.clock() - timedelta(hours=1))))
    assert past.status_code == 400 and "starts_at" in past.json()["errors"]
    created = post(app, API, token, ask(starts_at=format_rfc3339(start)))
    assert created.status_code == 201, created.text
    assert created.json()["starts_at"] == format_rfc3339(start)
    request_id = created.json()["id"]
    settle(app.ctx)
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    assert get(app, f"{API}/{request_id}", token).json()["status"] == "scheduled"
    cancelled = post(app, f"{API}/{request_id}/cancel", token)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    app.clock.advance(hours=3)
    assert app.ctx.lifecycle.run_all()["started"] == 0
    assert app.tailnet.writes == []
    assert app.ctx.access.get(request_id).status == RequestStatus.CANCELLED


def test_a_request_from_the_cli_is_approved_by_a_signed_slack_click(
    app_server: AppUnderTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str
) -> None:
    app = app_server
    cli_environment(monkeypatch, tmp_path, db_url)
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(app.config_path))
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", app.fake.base_url)
    run = invoker(monkeypatch, app.clock)
    asked = (
        "--profile",
        "prod",
        "--device",
        "rita-laptop",
        "--duration",
        "30m",
        "--reason",
        "rotate certs",
        "--as",
        "req@example.com",
    )
    shown = json.loads(ok(run("request", *asked, "--approver", "bob@example.com", "--json")))
    assert (shown["origin"], shown["approvers"]) == ("cli", [BOB])
    channel, ts = dm_message(app, BOB)  # sent by the CLI itself, through the same outbox
    assert click(app, ActionId.APPROVE, shown["id"], BOB, channel, ts).status_code == 200
    assert written(app.builtin.get_attributes(app.devices["laptop"].id)) == {"custom:prodAccess": True}
    assert "request #1: granted" in ok(run("requests", "show", "1"))


def test_slack_unavailable_is_503_and_stores_nothing(app_server: AppUnderTest) -> None:
    app = app_server
    _, token = new_client(app)
    app.fake.fail_next("users.info", "internal_error", status=500, times=20)
    response = post(app, API, token, ask())
    assert response.status_code == 503 and "Slack is busy" in response.json()["message"]
    assert get(app, f"{API}/1", token).status_code == 404
