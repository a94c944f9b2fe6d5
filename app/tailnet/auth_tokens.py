"""Checking credentials of the built-in HTTP API and issuing OAuth access tokens.

Both paths do the same work whether or not a credential id exists (``verify_secret``), so an attacker learns
nothing from timing; a token is looked up by the SHA-256 of its 190-bit secret, which leaks nothing useful.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from app.core.clock import Clock
from app.db import Database
from app.db.tables import ApiKeyRow, OAuthClientRow, OAuthTokenRow
from app.tailnet.auth_credentials import (
    ACCESS_TOKEN_PREFIX,
    API_KEY_PREFIX,
    hash_secret,
    new_secret,
    parse_api_key,
    parse_client_secret,
    verify_secret,
)
from app.tailnet.auth_scopes import ALL, Principal, normalize_scopes, scope_allows
from app.tailnet.errors import AuthenticationError, InvalidRequest

TOKEN_LIFETIME = timedelta(hours=1)
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``api_keys.last_used_at`` is rewritten at most this often, to keep reads from writing every time."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token just issued by the token endpoint."""

    access_token: str
    expires_in: int
    scopes: tuple[str, ...]

    def to_api(self) -> dict[str, object]:
        """The OAuth token response body."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": " ".join(self.scopes),
        }


def issue_token(db: Database, clock: Clock, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
    """The client-credentials grant: check the client, then issue a one-hour token.

    ``scope`` (space separated) must be covered by the client's scopes; absent → all of them. Expired tokens
    are deleted on the way, so the token table holds live tokens only.
    """
    parsed_id, secret = parse_client_secret(client_secret)
    if parsed_id != client_id.strip():
        raise AuthenticationError("invalid client credentials")
    now = clock()
    with db.session() as session:
        client = session.get(OAuthClientRow, parsed_id)
        if not verify_secret(secret, client.secret_hash if client is not None else None) or client is None:
            raise AuthenticationError("invalid client credentials")
        if client.revoked_at is not None:
            raise AuthenticationError("this OAuth client has been revoked")
        granted = tuple(client.scopes or ())
        wanted = normalize_scopes([scope]) if scope and scope.strip() else granted
        beyond = [s for s in wanted if not scope_allows(granted, s)]
        if beyond:
            raise InvalidRequest(f"scope {' '.join(beyond)} is not granted to this client (it has {' '.join(granted)})")
        token = ACCESS_TOKEN_PREFIX + new_secret()
        session.execute(delete(OAuthTokenRow).where(OAuthTokenRow.expires_at <= now))
        session.add(
            OAuthTokenRow(
                token_hash=hash_secret(token),
                client_id=parsed_id,
                scopes=list(wanted),
                expires_at=now + TOKEN_LIFETIME,
            )
        )
    return IssuedToken(token, int(TOKEN_LIFETIME.total_seconds()), wanted)


def authenticate(db: Database, clock: Clock, credential: str) -> Principal:
    """Who presents ``credential`` (an API key or an access token); ``AuthenticationError`` if nobody."""
    credential = credential.strip()
    with db.session() as session:
        if credential.startswith(API_KEY_PREFIX):
            return _check_api_key(session, clock, credential)
        if credential.startswith(ACCESS_TOKEN_PREFIX):
            return _check_token(session, clock, credential)
    raise AuthenticationError("invalid credentials; send an API key or an OAuth access token")


def _check_api_key(session: Session, clock: Clock, credential: str) -> Principal:
    """The principal of a live API key (all scopes), noting when it was last used (at most once a minute)."""
    key_id, secret = parse_api_key(credential)
    row = session.get(ApiKeyRow, key_id)
    if not verify_secret(secret, row.secret_hash if row is not None else None) or row is None:
        raise AuthenticationError("invalid API key")
    now = clock()
    if row.revoked_at is not None:
        raise AuthenticationError("this API key has been revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError("this API key has expired")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=now))
    return Principal("apikey", key_id, frozenset({ALL}))


def _check_token(session: Session, clock: Clock, credential: str) -> Principal:
    """The principal of a live access token whose client is not revoked (the token's scopes)."""
    # The lookup is by the SHA-256 of a 190-bit secret, so it leaks nothing useful about the secret.
    row = session.get(OAuthTokenRow, hash_secret(credential))
    if row is None:
        raise AuthenticationError("invalid access token")
    if row.expires_at <= clock():
        raise AuthenticationError("this access token has expired; request a new one")
    client = session.get(OAuthClientRow, row.client_id)
    if client is None or client.revoked_at is not None:
        raise AuthenticationError("this access token's OAuth client has been revoked")
    return Principal("oauth", row.client_id, frozenset(row.scopes or ()))
