"""Credentials of the built-in HTTP API: API keys, OAuth clients and their access tokens.

``AuthStore`` creates, lists and revokes them (each change audited) and is what the API asks to check a
credential or issue a token. The parts live beside it: ``auth_credentials`` (secret formats and hashing),
``auth_scopes`` (scope names, ``Principal``), ``auth_tokens`` (checking credentials, the client-credentials
grant) and ``auth_limiter`` (failed authentications per client address); their names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables import ApiKeyRow, OAuthClientRow, OAuthTokenRow
from app.tailnet import auth_tokens
from app.tailnet.auth_credentials import (
    ACCESS_TOKEN_PREFIX,
    API_KEY_PREFIX,
    CLIENT_SECRET_PREFIX,
    format_api_key,
    format_client_secret,
    hash_secret,
    key_id_of,
    new_id,
    new_secret,
    parse_api_key,
    parse_client_secret,
    secret_matches,
    verify_secret,
)
from app.tailnet.auth_limiter import FailedAuthLimiter, client_key
from app.tailnet.auth_scopes import (
    ALL,
    ALL_READ,
    ATTRIBUTES_READ,
    ATTRIBUTES_WRITE,
    DEFAULT_CLIENT_SCOPES,
    DEVICES_READ,
    SCOPES,
    Principal,
    normalize_scopes,
    scope_allows,
)
from app.tailnet.auth_tokens import LAST_USED_RESOLUTION, TOKEN_LIFETIME, IssuedToken
from app.tailnet.errors import InvalidRequest, NotFound
from app.tailnet.models import Actor

__all__ = [
    "ACCESS_TOKEN_PREFIX",
    "ALL",
    "ALL_READ",
    "API_KEY_PREFIX",
    "ATTRIBUTES_READ",
    "ATTRIBUTES_WRITE",
    "CLIENT_SECRET_PREFIX",
    "DEFAULT_CLIENT_SCOPES",
    "DEVICES_READ",
    "LAST_USED_RESOLUTION",
    "SCOPES",
    "TOKEN_LIFETIME",
    "ApiKeyInfo",
    "AuthStore",
    "FailedAuthLimiter",
    "IssuedToken",
    "OAuthClientInfo",
    "Principal",
    "client_key",
    "format_api_key",
    "format_client_secret",
    "hash_secret",
    "key_id_of",
    "new_id",
    "new_secret",
    "normalize_scopes",
    "parse_api_key",
    "parse_client_secret",
    "scope_allows",
    "secret_matches",
    "verify_secret",
]


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as listed (never with its secret)."""

    id: str
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class OAuthClientInfo:
    """An OAuth client as listed (never with its secret)."""

    id: str
    scopes: tuple[str, ...]
    description: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
    """The listed form of a stored key (its hash stays behind)."""
    return ApiKeyInfo(
        row.id,
        row.description,
        row.created_at,
        row.created_by,
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
    )


def _client_info(row: OAuthClientRow) -> OAuthClientInfo:
    """The listed form of a stored client (its hash stays behind)."""
    return OAuthClientInfo(
        row.id, tuple(row.scopes or ()), row.description, row.created_at, row.created_by, row.revoked_at
    )


class AuthStore:
    """Create, list, revoke and check the API's credentials."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    # API keys

    def create_api_key(
        self, *, actor: Actor, description: str = "", expires_in: timedelta | None = None
    ) -> tuple[ApiKeyInfo, str]:
        """Create a key; return its record and the full key, which is never available again."""
        now = self.clock()
        key_id, secret = new_id(), new_secret()
        row = ApiKeyRow(
            id=key_id,
            secret_hash=hash_secret(secret),
            description=description,
            created_at=now,
            created_by=actor.id,
            expires_at=now + expires_in if expires_in is not None else None,
        )
        with self.db.session() as session:
            session.add(row)
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.CREATE_API_KEY,
                target=f"apikey/{key_id}",
                new={"description": description},
                expiry=row.expires_at,
            )
        return _key_info(row), format_api_key(key_id, secret)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """Every API key, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id))
            return [_key_info(row) for row in rows]

    def revoke_api_key(self, ref: str, *, actor: Actor) -> bool:
        """Revoke a key by id (or whole key); False if it was already revoked."""
        key_id = key_id_of(ref)
        now = self.clock()
        with self.db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key with id {key_id!r}")
            if row.revoked_at is not None:
                return False
            row.revoked_at = now
            audit.record(session, at=now, actor=actor.id, action=AuditAction.REVOKE_API_KEY, target=f"apikey/{key_id}")
        return True

    # OAuth clients

    def create_oauth_client(
        self, *, actor: Actor, scopes: Iterable[str] = DEFAULT_CLIENT_SCOPES, description: str = ""
    ) -> tuple[OAuthClientInfo, str]:
        """Create a client; return its record and its secret, which is never available again."""
        chosen = normalize_scopes(scopes)
        if not chosen:
            raise InvalidRequest("an OAuth client needs at least one scope")
        now = self.clock()
        client_id, secret = new_id(), new_secret()
        row = OAuthClientRow(
            id=client_id,
            secret_hash=hash_secret(secret),
            scopes=list(chosen),
            description=description,
            created_at=now,
            created_by=actor.id,
        )
        with self.db.session() as session:
            session.add(row)
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.CREATE_OAUTH_CLIENT,
                target=f"oauth-client/{client_id}",
                new={"scopes": list(chosen), "description": description},
            )
        return _client_info(row), format_client_secret(client_id, secret)

    def list_oauth_clients(self) -> list[OAuthClientInfo]:
        """Every OAuth client, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(select(OAuthClientRow).order_by(OAuthClientRow.created_at, OAuthClientRow.id))
            return [_client_info(row) for row in rows]

    def revoke_oauth_client(self, client_id: str, *, actor: Actor) -> bool:
        """Revoke a client and drop its tokens; False if it was already revoked."""
        now = self.clock()
        client_id = client_id.strip()
        with self.db.session() as session:
            row = session.get(OAuthClientRow, client_id)
            if row is None:
                raise NotFound(f"no OAuth client with id {client_id!r}")
            if row.revoked_at is not None:
                return False
            row.revoked_at = now
            session.execute(delete(OAuthTokenRow).where(OAuthTokenRow.client_id == client_id))
            audit.record(
                session,
                at=now,
                actor=actor.id,
                action=AuditAction.REVOKE_OAUTH_CLIENT,
                target=f"oauth-client/{client_id}",
            )
        return True

    def issue_token(self, client_id: str, client_secret: str, scope: str | None = None) -> IssuedToken:
        """The client-credentials grant: check the client, then issue a one-hour token.

        ``scope`` (space separated) must be covered by the client's scopes; absent → all of them.
        """
        return auth_tokens.issue_token(self.db, self.clock, client_id, client_secret, scope)

    # checking credentials

    def authenticate(self, credential: str) -> Principal:
        """Who presents ``credential`` (an API key or an access token); ``AuthenticationError`` if nobody."""
        return auth_tokens.authenticate(self.db, self.clock, credential)
