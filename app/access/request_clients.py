"""Request clients: the credentials of the request API (scripts, runbooks, agents).

A client can ask for access and read or cancel the requests it made; nothing it holds can approve. Its secret is
shown once, when it is created, as ``abrc-<client id>-<secret>``; only the secret's SHA-256 is stored (random
secrets of about 190 bits need no salt or slow hash, as the built-in API's keys in ``app.tailnet.auth_credentials``).
Creating and revoking a client are audited.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update

from app.access.errors import AccessError
from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.tables.access import RequestClientRow
from app.tailnet.auth_credentials import hash_secret, new_secret, verify_secret

TOKEN_PREFIX = "abrc-"  # noqa: S105 - a prefix, not a secret
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID = re.compile(r"rc[a-z0-9]{12}")
_SECRET = re.compile(r"[A-Za-z0-9]{16,128}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")
MAX_DESCRIPTION = 255
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per client (not one write per API call)."""


class ClientAudit(StrEnum):
    """Audit action names of request clients."""

    CREATED = "Create request client"
    REVOKED = "Revoke request client"


class ClientUnauthorized(AccessError):
    """No valid, unrevoked client credential was presented."""


class ClientNotFound(AccessError):
    """No request client with that id."""


class ClientInvalid(AccessError):
    """What a new client was given cannot be stored (the message names the field)."""


@dataclass(frozen=True, slots=True)
class RequestClient:
    """A request client as stored (never its secret)."""

    id: str
    description: str
    requester_id: str | None
    profiles: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: RequestClientRow) -> RequestClient:
        return cls(
            id=row.id,
            description=row.description,
            requester_id=row.requester_id,
            profiles=tuple(row.profiles or ()),
            created_at=row.created_at,
            created_by=row.created_by,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )

    @property
    def actor(self) -> str:
        """The audit actor of what the client does: ``client:<id>``."""
        return f"client:{self.id}"

    def may_request(self, profile_id: str) -> bool:
        """Whether the client may ask for ``profile_id`` (no list: every profile)."""
        return not self.profiles or profile_id in self.profiles


def format_token(client_id: str, secret: str) -> str:
    """``abrc-<client id>-<secret>``: what the client sends as ``Authorization: Bearer``."""
    return f"{TOKEN_PREFIX}{client_id}-{secret}"


def parse_token(text: str) -> tuple[str, str] | None:
    """(client id, secret) of a token, or ``None`` when it is not shaped like one."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    client_id, sep, secret = text[len(TOKEN_PREFIX) :].partition("-")
    if not sep or not _ID.fullmatch(client_id) or not _SECRET.fullmatch(secret):
        return None
    return client_id, secret


def _new_id() -> str:
    return "rc" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class RequestClients:
    """Create, list, revoke and authenticate request clients."""

    def __init__(self, db: Database, *, clock: Clock = utcnow, profile_ids: Callable[[], Sequence[str]]) -> None:
        self.db = db
        self.clock = clock
        self.profile_ids = profile_ids
        """The profiles of the current config (a client may be limited only to profiles that exist)."""

    def create(
        self, *, description: str, requester_id: str | None, profiles: Sequence[str], created_by: str
    ) -> tuple[RequestClient, str]:
        """Store a new client; returns it and its token (shown once: only its hash is kept)."""
        description = description.strip()
        if not description or len(description) > MAX_DESCRIPTION:
            raise ClientInvalid(f"--description: say what the client is for, in 1 to {MAX_DESCRIPTION} characters")
        if requester_id is not None and not _USER_ID.fullmatch(requester_id):
            raise ClientInvalid(f"--requester: {requester_id!r} is not a Slack user id such as U012AB3CD")
        known = set(self.profile_ids())
        unknown = [p for p in profiles if p not in known]
        if unknown:
            offered = ", ".join(sorted(known)) or "none configured"
            raise ClientInvalid(f"--profile: no profile {', '.join(unknown)} in the config (profiles: {offered})")
        secret, now = new_secret(), self.clock()
        row = RequestClientRow(
            id=_new_id(),
            secret_hash=hash_secret(secret),
            description=description,
            requester_id=requester_id,
            profiles=list(dict.fromkeys(profiles)),
            created_at=now,
            created_by=created_by,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            audit.record(
                session,
                at=now,
                actor=created_by,
                action=ClientAudit.CREATED,
                target=f"request-client/{row.id}",
                details={"description": description, "requester": requester_id, "profiles": row.profiles},
            )
            client = RequestClient.from_row(row)
        return client, format_token(client.id, secret)

    def every(self) -> list[RequestClient]:
        """Every client, oldest first (revoked ones too)."""
        with self.db.session() as session:
            rows = session.scalars(select(RequestClientRow).order_by(RequestClientRow.created_at, RequestClientRow.id))
            return [RequestClient.from_row(row) for row in rows]

    def revoke(self, client_id: str, *, actor: str) -> RequestClient:
        """Revoke a client now (audited); its token stops working at once. Revoking twice changes nothing."""
        now = self.clock()
        with self.db.session() as session:
            row = session.get(RequestClientRow, client_id.strip(), with_for_update=True)
            if row is None:
                raise ClientNotFound(f"no request client {client_id!r} (see `accessbot request-clients list`)")
            if row.revoked_at is None:
                row.revoked_at = now
                audit.record(
                    session, at=now, actor=actor, action=ClientAudit.REVOKED, target=f"request-client/{row.id}"
                )
            return RequestClient.from_row(row)

    def authenticate(self, token: str) -> RequestClient:
        """The unrevoked client whose token this is; ``ClientUnauthorized`` otherwise.

        An unknown id costs the same hash and comparison as a wrong secret, so timing does not tell ids apart.
        """
        parsed = parse_token(token.strip())
        client_id, secret = parsed if parsed is not None else ("", token)
        with self.db.session() as session:
            row = session.get(RequestClientRow, client_id) if client_id else None
            if not verify_secret(secret, row.secret_hash if row is not None else None) or row is None:
                raise ClientUnauthorized("unknown or malformed request client token")
            if row.revoked_at is not None:
                raise ClientUnauthorized(f"request client {row.id} was revoked")
            client = RequestClient.from_row(row)
        self._touch(client)
        return client

    def _touch(self, client: RequestClient) -> None:
        """Note when the client was last used (at most once per ``LAST_USED_RESOLUTION``; a lost race is fine)."""
        now = self.clock()
        if client.last_used_at is not None and now - client.last_used_at < LAST_USED_RESOLUTION:
            return
        with self.db.session() as session:
            session.execute(update(RequestClientRow).where(RequestClientRow.id == client.id).values(last_used_at=now))
