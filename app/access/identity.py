"""Identity binding: which Tailscale login a Slack user is.

"Own devices", device eligibility, the self-approval rule and the audit compare Tailscale logins, not Slack
accounts. A Slack user's login is, first match wins: their ``user_links`` row (``accessbot users link``) > the
config's ``identities`` map (by Slack user id, then by email) > the config's ``identity_domains`` rewrite of their
Slack email's domain > the Slack email itself.

The links are kept in memory (``Identities``): the device picker answers every keystroke from memory, so it reads
a map reloaded at most every ``max_age`` (and at once after a change made through this process). Submissions and
approvals pass ``fresh=True`` and read the table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select

from app.config.identities import LOGIN, SLACK_USER, fold
from app.config.model import Config
from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.tables.access import UserLinkRow

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(seconds=30)

Later = Callable[[Callable[[], object]], object]
"""Runs a function in the background (the Slack layer's work pool)."""


class IdentityAudit(StrEnum):
    """Audit action names of identity binding."""

    LINKED = "User linked"
    UNLINKED = "User unlinked"


class LoginSource(StrEnum):
    """Where a resolved login came from (recorded in the request's audit details)."""

    LINK = "link"
    CONFIG = "config"
    DOMAIN = "domain"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Login:
    """A Slack user's Tailscale login and how it was found."""

    login: str
    source: LoginSource


@dataclass(frozen=True, slots=True)
class UserLink:
    """One ``user_links`` row as read back."""

    slack_user_id: str
    login: str
    created_at: datetime
    created_by: str


def resolve(
    user_id: str,
    email: str | None,
    *,
    links: Mapping[str, str],
    identities: Mapping[str, str],
    domains: Mapping[str, str],
) -> Login | None:
    """The login of a Slack user (``None``: no link, no config entry and no email to go by)."""
    if user_id in links:
        return Login(fold(links[user_id]), LoginSource.LINK)
    if user_id in identities:
        return Login(identities[user_id], LoginSource.CONFIG)
    if not email:
        return None
    folded = fold(email)
    if folded in identities:
        return Login(identities[folded], LoginSource.CONFIG)
    local, _, domain = folded.rpartition("@")
    if local and domain in domains:
        return Login(f"{local}@{domains[domain]}", LoginSource.DOMAIN)
    return Login(folded, LoginSource.EMAIL)


def same_login(a: str | None, b: str | None) -> bool:
    """Whether two logins name the same Tailscale user (both known)."""
    return bool(a) and bool(b) and fold(a or "") == fold(b or "")


class Identities:
    """Resolves Slack users to Tailscale logins over the ``user_links`` table and the config."""

    def __init__(
        self,
        db: Database,
        config: Callable[[], Config],
        *,
        clock: Clock = utcnow,
        max_age: timedelta = DEFAULT_MAX_AGE,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.max_age = max_age
        self._links: dict[str, str] = {}
        self._loaded_at: datetime | None = None
        self._lock = threading.Lock()

    def resolve(
        self, user_id: str, email: str | None, *, fresh: bool = False, later: Later | None = None
    ) -> Login | None:
        """The user's login; ``fresh`` reads the links table now instead of the in-memory map; ``later`` (a hot
        path: the device picker) refreshes a stale map in the background and answers from the one in memory."""
        links = self.reload() if fresh else self.links(later=later)
        config = self.config()
        return resolve(user_id, email, links=links, identities=config.identities, domains=config.identity_domains)

    def login_of(
        self, user_id: str, email: str | None, *, fresh: bool = False, later: Later | None = None
    ) -> str | None:
        """Only the login of ``resolve``."""
        found = self.resolve(user_id, email, fresh=fresh, later=later)
        return found.login if found else None

    def links(self, *, later: Later | None = None) -> dict[str, str]:
        """The links as of at most ``max_age`` ago (a failed reload keeps the previous map and is logged).

        With ``later``, a stale map is answered at once and reloaded by ``later`` (once: it counts as fresh
        meanwhile); only the first read of a process waits for the table.
        """
        loaded_at = self._loaded_at
        if loaded_at is not None and self.clock() - loaded_at < self.max_age:
            return self._links
        if later is not None and loaded_at is not None:
            with self._lock:
                self._loaded_at = self.clock()
            later(self._reload_logged)
            return self._links
        return self._reload_logged()

    def _reload_logged(self) -> dict[str, str]:
        """``reload``; a failure keeps the previous map (tried again after ``max_age``) and is logged."""
        try:
            return self.reload()
        except Exception as exc:  # the database is away: the previous map answers
            log.warning("could not reload the user links (keeping %d): %s", len(self._links), exc)
            with self._lock:
                self._loaded_at = self.clock()
            return self._links

    def reload(self) -> dict[str, str]:
        """Read every link now and keep them in memory."""
        with self.db.session() as session:
            rows = session.execute(select(UserLinkRow.slack_user_id, UserLinkRow.login)).all()
        links = {user_id: login for user_id, login in rows}
        with self._lock:
            self._links, self._loaded_at = links, self.clock()
        return links

    def invalidate(self) -> None:
        """Forget the in-memory map: the next read reloads it."""
        with self._lock:
            self._loaded_at = None


# -- managing links (``accessbot users``) -------------------------------------------------------------


def check_slack_user(user_id: str) -> str:
    """``user_id`` if it is a Slack member id, else ``ValueError`` saying what one looks like."""
    cleaned = user_id.strip()
    if not SLACK_USER.fullmatch(cleaned):
        raise ValueError(
            f"{user_id!r} is not a Slack member id (like U012AB3CD): in Slack open the person's profile, "
            "click ⋯ and choose 'Copy member ID'"
        )
    return cleaned


def check_login(login: str) -> str:
    """The folded Tailscale login, else ``ValueError`` saying what one looks like."""
    if not LOGIN.fullmatch(login.strip()):
        raise ValueError(f"{login!r} is not a Tailscale login (like alice@example.com or alice@github)")
    return fold(login)


def link(db: Database, user_id: str, login: str, *, by: str, at: datetime) -> str | None:
    """Bind ``user_id`` to ``login`` (replacing a previous link), audited; returns the previous login."""
    user_id, login = check_slack_user(user_id), check_login(login)
    with db.session() as session:
        row = session.get(UserLinkRow, user_id, with_for_update=True)
        previous = row.login if row is not None else None
        if row is None:
            session.add(UserLinkRow(slack_user_id=user_id, login=login, created_at=at, created_by=by))
        else:
            row.login, row.created_at, row.created_by = login, at, by
        audit.record(
            session,
            at=at,
            actor=by,
            action=IdentityAudit.LINKED,
            target=f"user/{user_id}",
            old=previous,
            new=login,
        )
    return previous


def unlink(db: Database, user_id: str, *, by: str, at: datetime) -> str | None:
    """Remove ``user_id``'s link, audited; returns the login it had (``None``: there was none, nothing audited)."""
    user_id = check_slack_user(user_id)
    with db.session() as session:
        row = session.get(UserLinkRow, user_id, with_for_update=True)
        if row is None:
            return None
        previous = row.login
        session.delete(row)
        audit.record(session, at=at, actor=by, action=IdentityAudit.UNLINKED, target=f"user/{user_id}", old=previous)
    return previous


def list_links(db: Database) -> list[UserLink]:
    """Every link, by Slack user id."""
    with db.session() as session:
        rows = session.scalars(select(UserLinkRow).order_by(UserLinkRow.slack_user_id)).all()
        return [UserLink(r.slack_user_id, r.login, r.created_at, r.created_by) for r in rows]
