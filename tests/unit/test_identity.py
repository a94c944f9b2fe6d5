"""Identity binding: resolution order (link > config map > domain rule > email), the in-memory links, link/unlink
with their audit events, and the config's validation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.access import identity
from app.access.identity import Identities, Login, LoginSource, resolve
from app.config.model import Config
from app.core.clock import FrozenClock
from app.core.errors import ConfigError
from app.db import Database
from app.db.tables import AuditEventRow

LINKS = {"ULINKED": "Linked@GitHub"}
IDENTITIES = {"UMAPPED": "mapped@example.com", "byemail@corp.example.com": "byemail@example.com"}
DOMAINS = {"corp.example.com": "example.com"}


@pytest.mark.parametrize(
    ("user_id", "email", "expected"),
    [
        # a link wins over everything, even a config entry for the same user
        ("ULINKED", "x@corp.example.com", Login("linked@github", LoginSource.LINK)),
        # config by user id, then by email (case-insensitive)
        ("UMAPPED", "other@corp.example.com", Login("mapped@example.com", LoginSource.CONFIG)),
        ("UANY", "ByEmail@Corp.Example.com", Login("byemail@example.com", LoginSource.CONFIG)),
        # the domain rule rewrites the Slack email's domain only
        ("UANY", "Dave@corp.example.com", Login("dave@example.com", LoginSource.DOMAIN)),
        ("UANY", "dave@sub.corp.example.com", Login("dave@sub.corp.example.com", LoginSource.EMAIL)),
        # otherwise the email itself, folded
        ("UANY", "Erin@Example.com", Login("erin@example.com", LoginSource.EMAIL)),
        # no link, no config entry, no email: unknown
        ("UANY", None, None),
        ("UMAPPED", None, Login("mapped@example.com", LoginSource.CONFIG)),
    ],
)
def test_resolution_order(user_id: str, email: str | None, expected: Login | None) -> None:
    assert resolve(user_id, email, links=LINKS, identities=IDENTITIES, domains=DOMAINS) == expected


def config(**fields: Any) -> Config:
    return Config.model_validate(fields)


def test_the_config_folds_emails_and_logins_and_keeps_user_ids() -> None:
    parsed = config(
        identities={"U1ABC": "Al@GitHub", "Bo@Corp.COM": "bo@example.com"}, identity_domains={"A.com": "B.com"}
    )
    assert parsed.identities == {"U1ABC": "al@github", "bo@corp.com": "bo@example.com"}
    assert parsed.identity_domains == {"a.com": "b.com"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"identities": {"alice": "a@b.com"}}, "identities keys are Slack user ids (U…/W…) or emails; got 'alice'"),
        ({"identities": {"U1ABC": "alice"}}, "must be a Tailscale login like alice@example.com; got 'alice'"),
        ({"identity_domains": {"corp.example.com": "@example.com"}}, "identity_domains maps email domains"),
        ({"identity_domains": {"bad domain": "example.com"}}, "identity_domains maps email domains"),
    ],
)
def test_bad_identity_settings_are_refused_with_the_field_and_what_is_wrong(
    tmp_path: Any, fields: dict[str, Any], message: str
) -> None:
    import yaml

    from app.config.model import load_config

    path = tmp_path / "accessbot.yml"
    path.write_text(yaml.safe_dump(fields))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert f"field '{next(iter(fields))}'" in str(info.value)


def test_identities_reads_links_once_per_max_age_and_fresh_reads_now(db: Database, clock: FrozenClock) -> None:
    current = [config(identity_domains={"corp.example.com": "example.com"})]
    ids = Identities(db, lambda: current[0], clock=clock, max_age=timedelta(seconds=30))
    assert ids.login_of("U1ABC", "al@corp.example.com") == "al@example.com"
    identity.link(db, "U1ABC", "al@github", by="cli:t", at=clock())
    # the cached map (loaded a moment ago) does not know the link yet; a fresh read does
    assert ids.login_of("U1ABC", "al@corp.example.com") == "al@example.com"
    assert ids.login_of("U1ABC", "al@corp.example.com", fresh=True) == "al@github"
    identity.unlink(db, "U1ABC", by="cli:t", at=clock())
    assert ids.login_of("U1ABC", None) == "al@github"  # within max_age: memory
    clock.advance(seconds=31)
    assert ids.login_of("U1ABC", None) is None  # reloaded: the link is gone, and no email to go by
    current[0] = config(identities={"U1ABC": "al@passkey"})  # a config edit counts at once (no cache)
    assert ids.login_of("U1ABC", None) == "al@passkey"


def test_the_picker_path_answers_a_stale_map_at_once_and_reloads_it_in_the_background(
    db: Database, clock: FrozenClock
) -> None:
    """``later`` (the device picker's keystrokes): no table read while Slack waits, except a process's first."""
    ids = Identities(db, config, clock=clock, max_age=timedelta(seconds=30))
    queued: list[Any] = []
    assert ids.login_of("U1ABC", "al@example.com", later=queued.append) == "al@example.com"
    assert queued == []  # the first read of a process loads the map itself
    identity.link(db, "U1ABC", "al@github", by="cli:t", at=clock())
    clock.advance(seconds=31)
    assert ids.login_of("U1ABC", "al@example.com", later=queued.append) == "al@example.com"  # stale, at once
    assert ids.login_of("U1ABC", "al@example.com", later=queued.append) == "al@example.com"
    assert len(queued) == 1  # one reload queued, not one per keystroke
    queued.pop()()  # the work pool runs it
    assert ids.login_of("U1ABC", "al@example.com", later=queued.append) == "al@github" and queued == []


def test_link_replaces_and_unlink_removes_each_audited(db: Database, clock: FrozenClock) -> None:
    assert identity.link(db, "U1ABC", "Al@Example.com", by="cli:ops", at=clock()) is None
    assert identity.link(db, "U1ABC", "al@github", by="cli:ops", at=clock()) == "al@example.com"
    assert [(link.slack_user_id, link.login) for link in identity.list_links(db)] == [("U1ABC", "al@github")]
    assert identity.unlink(db, "U1ABC", by="cli:ops", at=clock()) == "al@github"
    assert identity.unlink(db, "U1ABC", by="cli:ops", at=clock()) is None  # nothing to remove: nothing audited
    with db.session() as session:
        events = session.scalars(select(AuditEventRow).order_by(AuditEventRow.id)).all()
        seen = [(e.actor, e.action, e.target, e.old_value, e.new_value) for e in events]
    assert seen == [
        ("cli:ops", "User linked", "user/U1ABC", None, "al@example.com"),
        ("cli:ops", "User linked", "user/U1ABC", "al@example.com", "al@github"),
        ("cli:ops", "User unlinked", "user/U1ABC", "al@github", None),
    ]


@pytest.mark.parametrize(
    ("user_id", "login", "message"),
    [
        ("alice@example.com", "al@github", "is not a Slack member id (like U012AB3CD)"),
        ("U1ABC", "alice", "'alice' is not a Tailscale login"),
        ("U1ABC", "a b@example.com", "is not a Tailscale login"),
    ],
)
def test_link_refuses_bad_input_and_writes_nothing(
    db: Database, clock: FrozenClock, user_id: str, login: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        identity.link(db, user_id, login, by="cli:t", at=clock())
    assert identity.list_links(db) == []


def test_a_failed_reload_keeps_the_previous_links_and_waits_max_age(db: Database, clock: FrozenClock) -> None:
    ids = Identities(db, lambda: config(), clock=clock, max_age=timedelta(seconds=30))
    identity.link(db, "U1ABC", "al@github", by="cli:t", at=clock())
    assert ids.login_of("U1ABC", None) == "al@github"
    clock.advance(seconds=31)
    calls = []

    def away() -> dict[str, str]:
        calls.append(1)
        raise OSError("database away")

    ids.reload = away  # type: ignore[method-assign]
    assert ids.login_of("U1ABC", None) == "al@github"  # the previous map answers
    assert ids.login_of("U1ABC", None) == "al@github"
    assert len(calls) == 1  # not retried on every keystroke
