"""``accessbot users link|unlink|list``: identity binding from the command line, audited, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.clock import FrozenClock
from app.db import Database, audit
from tests.clitools import Run, cli_environment, failed, invoker, ok


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    (tmp_path / "accessbot.yml").write_text(
        "identities:\n  U0CONFIG: conf@example.com\nidentity_domains:\n  corp.example.com: example.com\n"
    )
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(tmp_path / "accessbot.yml"))
    return invoker(monkeypatch, clock)


def test_link_list_relink_unlink_each_audited(run: Run, db: Database) -> None:
    assert ok(run("users", "link", "U012AB3CD", "Alice@Example.com")).strip() == "linked U012AB3CD to alice@example.com"
    out = ok(run("users", "link", "U012AB3CD", "alice@github"))
    assert out.strip() == "linked U012AB3CD to alice@github (was alice@example.com)"
    listed = json.loads(ok(run("users", "list", "--json")))
    assert [(r["slack"], r["login"], r["source"], r["by"]) for r in listed] == [
        ("U012AB3CD", "alice@github", "link", "cli:tester"),
        ("U0CONFIG", "conf@example.com", "config", None),
        ("*@corp.example.com", "*@example.com", "identity_domains", None),
    ]
    table = ok(run("users", "list"))
    assert "U012AB3CD" in table and "alice@github" in table and "identity_domains" in table
    assert ok(run("users", "unlink", "U012AB3CD")).strip() == "unlinked U012AB3CD (was alice@github)"
    with db.session() as session:
        events = [(e.actor, e.action, e.target, e.old_value, e.new_value) for e in audit.query(session)]
    assert events == [
        ("cli:tester", "User linked", "user/U012AB3CD", None, "alice@example.com"),
        ("cli:tester", "User linked", "user/U012AB3CD", "alice@example.com", "alice@github"),
        ("cli:tester", "User unlinked", "user/U012AB3CD", "alice@github", None),
    ]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("link", "alice@example.com", "alice@github"), ("is not a Slack member id", "Copy member ID")),
        (("link", "U012AB3CD", "alice"), ("'alice' is not a Tailscale login", "alice@example.com")),
        (("unlink", "bob"), ("is not a Slack member id",)),
        (("unlink", "U0NOLINK"), ("U0NOLINK has no link", "accessbot users list")),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    run: Run, db: Database, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    failed(run("users", *args), *fragments)
    with db.session() as session:
        assert audit.query(session) == []


def test_list_without_any_binding_says_logins_are_emails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock
) -> None:
    cli_environment(monkeypatch, tmp_path, db_url)
    run = invoker(monkeypatch, clock)
    assert "every Slack user's Tailscale login is their Slack email" in ok(run("users", "list"))
    assert json.loads(ok(run("users", "list", "--json"))) == []
