"""``accessbot request``, ``accessbot requests list|show|cancel`` and ``accessbot request-clients``, run through
typer's CliRunner on a real database, with the fake Slack Web API on 127.0.0.1 (approvers resolved and DMed there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.access.read_model import Notice
from app.access.request_clients import TOKEN_PREFIX, parse_token
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, NotificationRow, RequestClientRow, RequestStatus
from app.tailnet.auth_credentials import hash_secret
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from tests.clitools import Run, cli_environment, failed, invoker, ok
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI

CONFIG = """
admins: [UADMIN]
request_timeout: 1h
profiles:
  - id: prod
    description: Production access
    attribute: custom:prodAccess
    max_duration: 4h
    durations: [30m, 1h, 4h]
    approvers: [bob@example.com, "@sre"]
  - id: db
    description: Database access
    attribute: custom:dbAccess
    max_duration: 1h
    approvers: [UBOB]
"""

USERS = {
    "UREQ": "req@example.com",
    "UBOB": "bob@example.com",
    "UCAROL": "carol@example.com",
    "UADMIN": "admin@example.com",
}


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=DEFAULT_TOKEN) as fake:
        for user_id, email in USERS.items():
            fake.add_user(user_id, email, email.split("@")[0], email.split("@")[0].title())
        fake.add_group("S0SRE", "sre", ["UBOB", "UCAROL"], name="SRE")
        yield fake


@pytest.fixture
def laptop(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="rita-laptop.tail1.ts.net", user="req@example.com", os="macos", actor=Actor("x"))


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock, slack: FakeSlackAPI) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    config = tmp_path / "accessbot.yml"
    config.write_text(CONFIG)
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(config))
    monkeypatch.setenv("SLACK_BOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack.base_url)
    return invoker(monkeypatch, clock)


def ask(run: Run, *extra: str, device: str = "rita-laptop", who: str = "req@example.com") -> Any:
    return run(
        "request",
        "--profile",
        "prod",
        "--device",
        device,
        "--duration",
        "1h",
        "--reason",
        "deploy hotfix 42",
        "--as",
        who,
        *extra,
    )


def rows(db: Database) -> list[AccessRequestRow]:
    with db.session() as session:
        return list(session.scalars(select(AccessRequestRow).order_by(AccessRequestRow.id)))


def dm_posts(slack: FakeSlackAPI, user: str) -> list[dict[str, Any]]:
    return [c.params for c in slack.calls("chat.postMessage") if c.response.get("channel") == f"D{user}"]


# -- request ----------------------------------------------------------------------------------------------------


def test_request_by_email_asks_every_approver_in_slack_and_is_stored_as_from_the_cli(
    run: Run, db: Database, laptop: Device, slack: FakeSlackAPI
) -> None:
    out = ok(ask(run))
    assert "request #1 pending: prod on rita-laptop.tail1.ts.net for 1h" in out
    assert "approvers asked in Slack: UBOB, UCAROL" in out
    [row] = rows(db)
    assert (row.status, row.origin, row.requester_id, row.device_id) == ("pending", "cli", "UREQ", laptop.id)
    assert (row.requester_email, row.request_client_id, row.reason) == ("req@example.com", None, "deploy hotfix 42")
    assert sorted(row.approver_ids) == ["UBOB", "UCAROL"]
    # the approvers' DMs went out at once, with Approve/Deny buttons, as for a request made in Slack
    for approver in ("UBOB", "UCAROL"):
        [dm] = dm_posts(slack, approver)
        assert "approve" in json.dumps(dm["blocks"]) and "rita-laptop.tail1.ts.net" in json.dumps(dm["blocks"])
    assert len(dm_posts(slack, "UREQ")) == 1  # the requester's own copy
    with db.session() as session:
        sent = session.scalars(select(NotificationRow).where(NotificationRow.sent_at.is_(None))).all()
    assert sent == []
    [event] = [e for e in audit_events(db) if e.target == "request/1"]
    assert (event.actor, event.action) == ("UREQ", "Access requested")
    assert (event.details["origin"], event.details["request_client"]) == ("cli", None)


def audit_events(db: Database) -> list[audit.AuditEvent]:
    with db.session() as session:
        return audit.query(session)


def test_request_with_chosen_approver_and_json(run: Run, db: Database, laptop: Device) -> None:
    shown = json.loads(ok(ask(run, "--approver", "carol@example.com", "--json", who="UREQ")))
    assert (shown["status"], shown["origin"], shown["approvers"]) == ("pending", "cli", ["UCAROL"])
    assert shown["device"]["id"] == laptop.id and shown["duration_seconds"] == 3600


def test_request_errors_are_one_line_per_field_and_store_nothing(run: Run, db: Database, laptop: Device) -> None:
    result = run(
        "request",
        "--profile",
        "prod",
        "--device",
        "no-such-box",
        "--duration",
        "2h",
        "--reason",
        " ",
        "--as",
        "UREQ",
        "--approver",
        "UADMIN",
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error"] * 4, lines
    joined = "\n".join(lines)
    for fragment in (
        "--device: no device",
        "--duration: Choose one of the offered",
        "--approver: Only the",
        "--reason:",
    ):
        assert fragment in joined, joined
    assert rows(db) == []
    assert "Traceback" not in result.output


def test_request_for_an_unknown_profile_user_or_email(run: Run, db: Database, laptop: Device) -> None:
    failed(
        run("request", "--profile", "nope", "--device", "x", "--duration", "1h", "--reason", "r", "--as", "UREQ"),
        "--profile: No profile 'nope'; profiles: prod, db.",
    )
    failed(ask(run, who="nobody@example.com"), "--as: no Slack user has the email nobody@example.com")
    failed(ask(run, who="UNOBODY"), "--as:", "'UNOBODY' is not a Slack user of this workspace")
    bad_duration = ("--device", "rita-laptop", "--duration", "soon", "--reason", "r", "--as", "UREQ")
    failed(run("request", "--profile", "prod", *bad_duration), "--duration: invalid duration 'soon'")
    assert rows(db) == []


def test_request_needs_the_slack_bot_token(run: Run, monkeypatch: pytest.MonkeyPatch, laptop: Device) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    failed(ask(run, who="UREQ"), "set SLACK_BOT_TOKEN")


def test_requests_are_queued_when_slack_refuses_delivery(
    run: Run, db: Database, laptop: Device, slack: FakeSlackAPI
) -> None:
    slack.fail_next("chat.postMessage", "ratelimited", status=429, times=50, retry_after=30)
    out = ok(ask(run))
    assert "the Slack DMs are queued" in out
    with db.session() as session:
        queued = session.scalars(select(NotificationRow.kind).where(NotificationRow.sent_at.is_(None))).all()
    assert queued == [Notice.REQUESTED]
    assert rows(db)[0].status == "pending"


# -- requests list / show / cancel ------------------------------------------------------------------------------


def test_list_show_and_cancel(run: Run, db: Database, laptop: Device, slack: FakeSlackAPI) -> None:
    ok(ask(run))
    ok(ask(run, "--approver", "UCAROL"))
    listed = json.loads(ok(run("requests", "list", "--json")))["requests"]
    assert [r["id"] for r in listed] == [2, 1]
    table = ok(run("requests", "list", "--status", "pending", "--requester", "req@example.com"))
    assert "rita-laptop.tail1.ts.net" in table and "cli" in table
    assert "no requests" in ok(run("requests", "list", "--status", "granted"))
    assert "no requests" in ok(run("requests", "list", "--requester", "UBOB"))
    failed(run("requests", "list", "--status", "open"), "--status: unknown status open")

    shown = ok(run("requests", "show", "1"))
    assert "request #1: pending" in shown and "origin:     cli" in shown and "approvals:  0 of 1" in shown
    assert "Access requested" in shown

    slack.reset()
    out = ok(run("requests", "cancel", "1"))
    assert "request #1 cancelled" in out
    assert rows(db)[0].status == RequestStatus.CANCELLED and rows(db)[0].ended_by == "cli:tester"
    # the approvers' DMs lose their buttons; the requester is told who cancelled
    updates = slack.calls("chat.update")
    assert len(updates) == 3  # UBOB's, UCAROL's and the requester's copy
    assert all("approve" not in json.dumps(u.params["blocks"]) for u in updates)
    assert all("Request cancelled by `cli:tester`" in json.dumps(u.params["blocks"]) for u in updates)
    [told] = dm_posts(slack, "UREQ")
    assert "was cancelled by" in told["text"]

    trail = json.loads(ok(run("requests", "show", "1", "--json")))
    assert trail["status"] == "cancelled"
    assert [(e["actor"], e["action"]) for e in trail["audit"]] == [
        ("UREQ", "Access requested"),
        ("cli:tester", "Access request cancelled"),
    ]
    failed(run("requests", "cancel", "1"), "Request 1 was cancelled")
    failed(run("requests", "show", "99"), "Request 99 does not exist.")
    failed(run("requests", "cancel", "99"), "Request 99 does not exist.")


def test_a_granted_request_cannot_be_cancelled(run: Run, db: Database, laptop: Device) -> None:
    ok(ask(run))
    with db.session() as session:
        session.get(AccessRequestRow, 1).status = RequestStatus.GRANTED  # type: ignore[union-attr]
    failed(run("requests", "cancel", "1"), "Request 1 was already approved and granted")


# -- request-clients --------------------------------------------------------------------------------------------


def test_request_clients_create_list_revoke_are_audited_and_keep_only_a_hash(
    run: Run, db: Database, clock: FrozenClock
) -> None:
    created = json.loads(
        ok(
            run(
                "request-clients",
                "create",
                "--description",
                "deploy bot",
                "--requester",
                "UREQ",
                "--profile",
                "prod",
                "--json",
            )
        )
    )
    token = created["token"]
    assert token.startswith(TOKEN_PREFIX)
    client_id, secret = parse_token(token) or ("", "")
    assert client_id == created["id"] and created["profiles"] == ["prod"] and created["requester"] == "UREQ"
    with db.session() as session:
        row = session.get(RequestClientRow, client_id)
        assert row is not None and row.secret_hash == hash_secret(secret) and secret not in row.secret_hash
    clock.advance(seconds=1)  # listed oldest first
    text = ok(run("request-clients", "create", "--description", "runbook"))
    assert "token: abrc-" in text and "not shown again" in text

    listed = ok(run("request-clients", "list"))
    assert "deploy bot" in listed and "runbook" in listed and secret not in listed
    listed_json = json.loads(ok(run("request-clients", "list", "--json")))["clients"]
    assert [c["description"] for c in listed_json] == ["deploy bot", "runbook"]
    assert all("token" not in c for c in listed_json)

    assert f"request client {client_id} revoked" in ok(run("request-clients", "revoke", client_id))
    assert json.loads(ok(run("request-clients", "list", "--json")))["clients"][0]["revoked_at"]
    events = [(e.actor, e.action, e.target) for e in audit_events(db) if e.target.startswith("request-client/")]
    assert events[0] == ("cli:tester", "Create request client", f"request-client/{client_id}")
    assert events[-1] == ("cli:tester", "Revoke request client", f"request-client/{client_id}")
    assert all(secret not in json.dumps(e.to_json()) for e in audit_events(db))


def test_request_clients_refuse_bad_input(run: Run) -> None:
    failed(run("request-clients", "create", "--description", "x", "--profile", "nope"), "--profile: no profile nope")
    failed(run("request-clients", "create", "--description", "x", "--requester", "bob"), "--requester: 'bob'")
    failed(run("request-clients", "create", "--description", "  "), "--description")
    failed(run("request-clients", "revoke", "rcnothere"), "no request client 'rcnothere'")
    assert "no request clients" in ok(run("request-clients", "list"))


def test_a_scheduled_request_from_the_cli(run: Run, db: Database, laptop: Device) -> None:
    shown = json.loads(ok(ask(run, "--start", "2026-11-21T14:00:00Z", "--json")))
    assert (shown["status"], shown["starts_at"]) == ("pending", "2026-11-21T14:00:00Z")
    assert "starts:     2026-11-21T14:00:00Z" in ok(run("requests", "show", str(shown["id"])))
    failed(ask(run, "--start", "at two"), "--start: invalid timestamp 'at two'")
    failed(ask(run, "--start", "2026-11-21T11:00:00Z"), "--start:")
    assert len(rows(db)) == 1


def test_slack_unavailable_is_one_line_and_stores_nothing(
    run: Run, db: Database, laptop: Device, slack: FakeSlackAPI
) -> None:
    slack.fail_next("users.info", "internal_error", status=500, times=20)
    failed(ask(run, who="UREQ"), "Slack is busy right now")
    assert rows(db) == []
