"""``accessbot doctor`` against the loopback fakes: Slack (FakeSlackAPI), Huntress, the built-in tailnet and its
Tailscale-compatible HTTP API. Each problem of the issue's "done when" is one ``fail`` line with what to do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from typer.testing import Result

from app.core.clock import FrozenClock
from app.core.crypto import KEY_FILE_NAME, Cipher
from app.db import Database
from app.db.migrate import MIGRATIONS, head_revision, upgrade
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from app.vendors.integrations import Integrations
from tests.clitools import Run, invoker
from tests.conftest import PG_URL
from tests.fakes.slack_api import DEFAULT_SCOPES, FakeSlackAPI
from tests.fakes.vendors import HUNTRESS_KEY, HUNTRESS_SECRET, FakeHuntress, huntress_agent
from tests.serving import serving

ADMIN = Actor("cli:setup")
CHANNEL = "C0ACCESS1"
PASSPHRASE = "doctor tests passphrase 0123456789"

CONFIG = f"""
profiles:
  - id: prod
    description: Production
    attribute: custom:prodAccess
    max_duration: 4h
    approvers: [ann@example.com, "@sre-leads"]
    notify_channel: {CHANNEL}
"""


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        fake.add_user("UANN", "ann@example.com", "ann")
        fake.add_user("UBOB", "bob@example.com", "bob")
        fake.add_group("S0SRE", "sre-leads", ["UBOB"])
        fake.add_channel(CHANNEL, "access-grants")
        yield fake


@pytest.fixture
def huntress() -> Iterator[FakeHuntress]:
    with FakeHuntress([huntress_agent(0, "SER-1")], rate_limit_per_minute=None) as fake:
        yield fake


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, slack: FakeSlackAPI) -> Path:
    """A complete, working set-up: the config file, Slack, a device on the built-in tailnet."""
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith(("TAILSCALE_", "SLACK_", "ACCESSBOT_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("USER", "tester")
    if PG_URL:
        monkeypatch.setenv("ACCESSBOT_SECRET_KEY", PASSPHRASE)
    config = tmp_path / "accessbot.yml"
    config.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(config))
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
    monkeypatch.setenv("SLACK_API_URL", slack.base_url)
    return tmp_path


@pytest.fixture
def device(env: Path, db: Database, clock: FrozenClock) -> None:
    BuiltinTailnet(db, clock=clock).add_device(
        name="laptop", user="ann@example.com", serial_numbers=["SER-1"], actor=ADMIN
    )


@pytest.fixture
def run(env: Path, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock) -> Run:
    return invoker(monkeypatch, clock)


def connect_huntress(db: Database, url: str, key: str = HUNTRESS_KEY) -> None:
    """Store a Huntress integration (unchecked, as ``--no-verify`` would) with the cipher the CLI uses."""
    secret = os.environ.get("ACCESSBOT_SECRET_KEY")
    if secret:
        cipher = Cipher.from_secret(secret)
    else:
        from app.core.crypto import load_or_create_key_file

        cipher = Cipher(load_or_create_key_file(Path.cwd() / KEY_FILE_NAME))
    values = {"api_key": key, "api_secret": HUNTRESS_SECRET, "base_url": url}
    Integrations(db, cipher).add("huntress", values, actor="cli:tester")


def doctor(run: Run, *args: str) -> tuple[Result, list[dict[str, Any]]]:
    result = run("doctor", "--json", *args)
    body = json.loads(result.stdout)
    assert body["ok"] is (result.exit_code == 0)
    return result, body["checks"]


def line(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [c for c in checks if c["check"] == name]
    assert len(found) == 1, checks
    return found[0]


def failures(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checks if c["status"] == "fail"]


# -- all well ---------------------------------------------------------------------------------------------


def test_a_working_set_up_is_all_ok(run: Run, db: Database, device: None, huntress: FakeHuntress) -> None:
    connect_huntress(db, huntress.url)
    result, checks = doctor(run)
    assert result.exit_code == 0, result.output
    assert [c["check"] for c in checks] == [
        "database",
        "secret key",
        "config",
        "policy",
        "slack token",
        "slack scopes",
        "approvers",
        f"notify channel {CHANNEL}",
        "tailnet",
        "integration huntress",
    ]
    assert {c["status"] for c in checks} == {"ok"}, checks
    assert all(set(c) == {"check", "status", "detail", "hint"} and c["hint"] == "" for c in checks)
    assert "bot accessbot" in line(checks, "slack token")["detail"]
    assert "1 email, 0 user ids, 1 user group in 1 profile" in line(checks, "approvers")["detail"]
    assert "#access-grants" in line(checks, f"notify channel {CHANNEL}")["detail"]
    assert "1 device listed, attributes of laptop" in line(checks, "tailnet")["detail"]
    assert "Huntress accepted the credentials" in line(checks, "integration huntress")["detail"]
    assert huntress.requests == 1  # one page, one agent
    assert [r.params.get("limit") for r in huntress.calls] == ["1"]


def test_human_output_is_one_line_per_check(run: Run, device: None) -> None:
    result = run("doctor")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 10  # no integration: one line says so
    assert lines[0].startswith("ok    database: ")
    assert any(x.startswith("ok    integrations: no EDR integration") for x in lines)
    if PG_URL:  # ACCESSBOT_SECRET_KEY is set
        assert result.stderr.strip() == "10 ok, 0 warn, 0 fail"
    else:  # no key file until an integration is added
        assert result.stderr.strip() == "9 ok, 1 warn, 0 fail"
        assert any(x.startswith("warn  secret key: no ACCESSBOT_SECRET_KEY and no key file ") for x in lines)


def test_nothing_is_posted_to_slack(run: Run, slack: FakeSlackAPI, device: None) -> None:
    doctor(run)
    methods = {c.method for c in slack.calls()}
    assert methods <= {"auth.test", "users.lookupByEmail", "usergroups.list", "usergroups.users.list",
                       "conversations.info"}, methods  # fmt: skip
    assert not slack.messages()


# -- the four problems ------------------------------------------------------------------------------


def test_a_bot_missing_from_its_notify_channel_fails(run: Run, slack: FakeSlackAPI, device: None) -> None:
    slack.remove_bot(CHANNEL)
    result, checks = doctor(run)
    assert result.exit_code == 1
    [problem] = failures(checks)
    assert problem["check"] == f"notify channel {CHANNEL}"
    assert "not a member of #access-grants" in problem["detail"] and "profile prod" in problem["detail"]
    assert problem["hint"] == f"run /invite @accessbot in {CHANNEL}"


def test_an_archived_or_unknown_channel_fails(run: Run, slack: FakeSlackAPI, device: None) -> None:
    slack.add_channel(CHANNEL, "access-grants", archived=True)
    assert "archived" in failures(doctor(run)[1])[0]["detail"]
    slack.add_channel(CHANNEL, "access-grants", is_private=True, bot_member=False)
    [problem] = failures(doctor(run)[1])
    assert "does not exist, or it is private" in problem["detail"]


def test_a_public_channel_is_enough_with_chat_write_public(run: Run, slack: FakeSlackAPI, device: None) -> None:
    slack.remove_bot(CHANNEL)
    slack.chat_write_public = True
    result, checks = doctor(run)
    assert result.exit_code == 0, checks
    assert "chat:write.public" in line(checks, f"notify channel {CHANNEL}")["detail"]


def test_an_unresolvable_approver_fails(run: Run, env: Path, device: None) -> None:
    (env / "accessbot.yml").write_text(CONFIG.replace("ann@example.com", "gone@example.com"), encoding="utf-8")
    result, checks = doctor(run)
    assert result.exit_code == 1
    [problem] = failures(checks)
    assert problem["check"] == "approvers"
    assert (
        problem["detail"] == "approver gone@example.com (profile prod) is not in the Slack workspace (users_not_found)"
    )
    assert problem["hint"] == "fix or remove gone@example.com in the approvers of profile prod"


def test_an_unknown_or_empty_user_group(run: Run, env: Path, slack: FakeSlackAPI, device: None) -> None:
    slack.add_group("S0SRE", "sre-leads", [])
    result, checks = doctor(run)
    assert result.exit_code == 0
    assert line(checks, "approvers")["status"] == "warn"
    assert "has no members" in line(checks, "approvers")["detail"]
    (env / "accessbot.yml").write_text(CONFIG.replace("@sre-leads", "@nobody-here"), encoding="utf-8")
    [problem] = failures(doctor(run)[1])
    assert "user group @nobody-here (profile prod) does not exist" in problem["detail"]


def test_a_wrong_vendor_key_fails(run: Run, db: Database, device: None, huntress: FakeHuntress) -> None:
    connect_huntress(db, huntress.url, key="hk_wrong")
    result, checks = doctor(run)
    assert result.exit_code == 1
    [problem] = failures(checks)
    assert problem["check"] == "integration huntress"
    assert "Huntress refused the credentials (HTTP 401" in problem["detail"]
    assert "hk_wrong" not in result.stdout
    assert problem["hint"] == "accessbot integrations update huntress with working credentials"


def test_an_unreachable_vendor_fails_with_the_cause(run: Run, db: Database, device: None) -> None:
    with FakeHuntress() as gone:
        url = gone.url
    connect_huntress(db, url)
    _result, checks = doctor(run)
    [problem] = failures(checks)
    assert problem["check"] == "integration huntress" and "did not answer" in problem["detail"]


@pytest.mark.skipif(bool(PG_URL), reason="builds a SQLite database at an older revision")
def test_an_outdated_schema_fails_and_is_not_upgraded(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = ScriptDirectory(str(MIGRATIONS)).get_revision(head_revision()).down_revision
    assert isinstance(older, str)
    path = tmp_path / "old.db"
    old = Database(f"sqlite:///{path}")
    upgrade(old.engine, older)
    old.dispose()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    result, checks = doctor(run)
    assert result.exit_code == 1
    [problem] = failures(checks)
    assert problem["check"] == "database"
    assert f"is at revision {older}, this accessbot needs {head_revision()}" in problem["detail"]
    assert problem["hint"] == "run `accessbot db upgrade` (with the same DATABASE_URL)"
    assert line(checks, "tailnet")["status"] == "warn"  # skipped, not failed twice
    check = Database(f"sqlite:///{path}")
    try:
        from app.db.migrate import current_revision

        assert current_revision(check.engine) == older  # doctor did not migrate it
    finally:
        check.dispose()


# -- other findings ------------------------------------------------------------------------------------------


@pytest.mark.skipif(bool(PG_URL), reason="the key file is SQLite's")
def test_doctor_creates_no_key_file_and_no_database(run: Run, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, checks = doctor(run)
    assert line(checks, "secret key")["status"] == "warn"
    assert not (env / KEY_FILE_NAME).exists()
    missing = env / "nowhere" / "missing.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    result, checks = doctor(run)
    assert result.exit_code == 1
    assert line(checks, "database")["detail"] == f"no database file at {missing}"
    assert not missing.exists() and not missing.parent.exists()
    assert not (env / KEY_FILE_NAME).exists()


def test_a_short_secret_key_fails(run: Run, monkeypatch: pytest.MonkeyPatch, device: None) -> None:
    monkeypatch.setenv("ACCESSBOT_SECRET_KEY", "short")
    problem = line(doctor(run)[1], "secret key")
    assert problem["status"] == "fail" and "passphrase of at least 16 characters" in problem["detail"]


def test_a_refused_slack_token_skips_the_other_slack_checks(
    run: Run, monkeypatch: pytest.MonkeyPatch, device: None
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")
    result, checks = doctor(run)
    [problem] = failures(checks)
    assert problem["detail"] == "Slack refused the bot token (invalid_auth)"
    assert "xoxb-revoked" not in result.stdout
    assert not [c for c in checks if c["check"] in ("approvers", f"notify channel {CHANNEL}")]


def test_missing_scopes(run: Run, slack: FakeSlackAPI, device: None) -> None:
    slack.scopes = [s for s in DEFAULT_SCOPES if s not in ("users:read.email", "channels:read", "groups:read")]
    _result, checks = doctor(run)
    scopes = line(checks, "slack scopes")
    assert scopes["status"] == "fail" and scopes["detail"] == "the bot token lacks users:read.email"
    channel = line(checks, f"notify channel {CHANNEL}")
    assert channel["status"] == "warn" and "lacks channels:read" in channel["detail"]
    slack.scopes = [s for s in DEFAULT_SCOPES if s != "channels:read"]
    scopes = line(doctor(run)[1], "slack scopes")
    assert scopes["status"] == "warn" and "without channels:read doctor cannot read notify channels" in scopes["detail"]


def test_slack_unreachable_is_a_fail_line(run: Run, monkeypatch: pytest.MonkeyPatch, device: None) -> None:
    with FakeSlackAPI() as gone:
        url = gone.base_url
    monkeypatch.setenv("SLACK_API_URL", url)
    result = run("doctor")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [fail_line] = [x for x in result.stdout.splitlines() if x.startswith("fail")]
    assert fail_line.startswith("fail  slack token: Slack did not answer: ")


def test_without_a_slack_token_slack_is_skipped_with_a_warning(
    run: Run, monkeypatch: pytest.MonkeyPatch, device: None
) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    result, checks = doctor(run)
    assert result.exit_code == 0
    assert line(checks, "slack")["status"] == "warn"


def test_an_invalid_config_and_a_policy_with_errors(run: Run, env: Path, device: None) -> None:
    (env / "accessbot.yml").write_text(CONFIG + "colour: blue\n", encoding="utf-8")
    problem = line(doctor(run)[1], "config")
    assert problem["status"] == "fail" and "colour" in problem["detail"]
    (env / "policy.hujson").write_text('{"postures": {"posture:ok": ["custom:x =="]}}', encoding="utf-8")
    (env / "accessbot.yml").write_text(CONFIG + "policy_file: policy.hujson\n", encoding="utf-8")
    problem = line(doctor(run)[1], "policy")
    assert problem["status"] == "fail" and problem["hint"].startswith("run `accessbot posture lint ")


def test_the_tailnet_api_with_a_wrong_key_fails(
    run: Run, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, device: None
) -> None:
    store = BuiltinTailnet(db, clock=clock)
    with serving(make_api(store, db, clock=clock)) as url:
        monkeypatch.setenv("TAILSCALE_API_URL", url)
        _, key = AuthStore(db, clock=clock).create_api_key(actor=ADMIN, description="doctor")
        monkeypatch.setenv("TAILSCALE_API_KEY", key)
        _result, checks = doctor(run)
        assert line(checks, "tailnet")["status"] == "ok", checks
        assert f"Tailscale API {url}" in line(checks, "tailnet")["detail"]
        monkeypatch.setenv("TAILSCALE_API_KEY", "tskey-api-wrong")
        _result, checks = doctor(run)
    problem = line(checks, "tailnet")
    assert problem["status"] == "fail" and "refused" in problem["detail"]
    assert "devices:core:read and devices:posture_attributes" in problem["hint"]


def test_an_unreachable_or_damaged_database_is_one_line(run: Run, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/accessbot")
    monkeypatch.setenv("ACCESSBOT_SECRET_KEY", PASSPHRASE)
    result, checks = doctor(run)
    problem = line(checks, "database")
    assert problem["status"] == "fail" and problem["detail"].startswith("cannot connect: ")
    assert "port 1" in problem["detail"] and "host, port" in problem["hint"]
    damaged = env / "damaged.db"
    damaged.write_bytes(b"not a database at all " * 300)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{damaged}")
    result, checks = doctor(run)
    assert result.exit_code == 1 and "Traceback" not in result.output
    problem = line(checks, "database")
    assert problem["detail"] == "cannot open the SQLite file: file is not a database"
    assert [c["check"] for c in failures(checks)] == ["database"]
