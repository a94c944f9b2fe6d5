"""Credentials of the built-in HTTP API: API keys, OAuth clients and their access tokens.

Secrets are random (``secrets``, ≥ 128 bits) and only their SHA-256 is stored. Formats follow Tailscale's:
an API key is ``tskey-api-<id>-<secret>``, an OAuth client secret ``tskey-client-<client id>-<secret>``;
an access token issued to a client is ``tskey-access-<secret>`` and lives one hour.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import string
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables import ApiKeyRow, OAuthClientRow, OAuthTokenRow
from app.tailnet.errors import AuthenticationError, InvalidRequest, NotFound, PermissionDenied
from app.tailnet.models import Actor

log = logging.getLogger(__name__)

API_KEY_PREFIX = "tskey-api-"
CLIENT_SECRET_PREFIX = "tskey-client-"  # noqa: S105 - a prefix, not a secret
ACCESS_TOKEN_PREFIX = "tskey-access-"  # noqa: S105
TOKEN_LIFETIME = timedelta(hours=1)
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``api_keys.last_used_at`` is rewritten at most this often, to keep reads from writing every time."""

_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 32  # 32 * log2(62) = about 190 bits
_ID_BODY_LENGTH = 12
_ID = re.compile(r"k[A-Za-z0-9]{4,40}CNTRL")
_SECRET = re.compile(r"[A-Za-z0-9]{16,128}")

ALL, ALL_READ = "all", "all:read"
DEVICES_READ = "devices:core:read"
ATTRIBUTES_READ = "devices:posture_attributes:read"
ATTRIBUTES_WRITE = "devices:posture_attributes"
SCOPES = (ALL, ALL_READ, "devices:core", DEVICES_READ, ATTRIBUTES_WRITE, ATTRIBUTES_READ)
"""The scopes this API knows; a ``:read`` scope is implied by its write scope and by ``all:read``."""
DEFAULT_CLIENT_SCOPES = (DEVICES_READ, ATTRIBUTES_WRITE)
"""What accessbot itself needs from an OAuth client (FACTS §1)."""


# -- secrets and their formats ------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh alphanumeric secret of about 190 bits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))


def new_id() -> str:
    """A fresh credential id in Tailscale's style, e.g. ``kX7fq2Lm9RtZaCNTRL``."""
    return "k" + "".join(secrets.choice(_ALPHABET) for _ in range(_ID_BODY_LENGTH)) + "CNTRL"


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a secret; high-entropy secrets need no salt or slow hash."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


_DUMMY_HASH = hash_secret(new_secret())
"""Compared against when a credential id is unknown, so that case does the same work as a wrong secret."""


def verify_secret(secret: str, stored_hash: str | None) -> bool:
    """``secret_matches`` that also accepts ``None`` (no such credential id) and then does the same work.

    The secret is hashed and compared once either way, so the answer's timing does not tell whether the id
    exists.
    """
    matches = secret_matches(secret, stored_hash if stored_hash is not None else _DUMMY_HASH)
    return matches and stored_hash is not None


def format_api_key(key_id: str, secret: str) -> str:
    """``tskey-api-<id>-<secret>``."""
    return f"{API_KEY_PREFIX}{key_id}-{secret}"


def format_client_secret(client_id: str, secret: str) -> str:
    """``tskey-client-<client id>-<secret>``."""
    return f"{CLIENT_SECRET_PREFIX}{client_id}-{secret}"


def _split(text: str, prefix: str, what: str) -> tuple[str, str]:
    if not text.startswith(prefix):
        raise AuthenticationError(f"invalid {what}")
    cred_id, sep, secret = text[len(prefix) :].partition("-")
    if not sep or not _ID.fullmatch(cred_id) or not _SECRET.fullmatch(secret):
        raise AuthenticationError(f"invalid {what}")
    return cred_id, secret


def parse_api_key(text: str) -> tuple[str, str]:
    """Split an API key into (id, secret); ``AuthenticationError`` if it is not shaped like one."""
    return _split(text.strip(), API_KEY_PREFIX, "API key")


def parse_client_secret(text: str) -> tuple[str, str]:
    """Split an OAuth client secret into (client id, secret); ``AuthenticationError`` if malformed."""
    return _split(text.strip(), CLIENT_SECRET_PREFIX, "client secret")


def key_id_of(ref: str) -> str:
    """An API key id from either the id itself or a whole key."""
    ref = ref.strip()
    return parse_api_key(ref)[0] if ref.startswith(API_KEY_PREFIX) else ref


# -- scopes -------------------------------------------------------------------------------------------


def normalize_scopes(requested: Iterable[str]) -> tuple[str, ...]:
    """Split on spaces and commas, drop duplicates, and refuse unknown scopes (``InvalidRequest``)."""
    out: list[str] = []
    for item in requested:
        for scope in item.replace(",", " ").split():
            if scope not in SCOPES:
                raise InvalidRequest(f"unknown scope {scope!r}; known scopes: {', '.join(SCOPES)}")
            if scope not in out:
                out.append(scope)
    return tuple(out)


def scope_allows(granted: Iterable[str], needed: str) -> bool:
    """Whether ``granted`` covers ``needed``: exact, ``all``, or a ``:read`` implied by write/``all:read``."""
    granted = set(granted)
    if ALL in granted or needed in granted:
        return True
    if needed.endswith(":read"):
        return ALL_READ in granted or needed.removesuffix(":read") in granted
    return False


# -- records ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made an API request: an API key (full access) or an OAuth client's token (its scopes)."""

    kind: str  # "apikey" or "oauth"
    id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> Actor:
        """The audit actor of writes made with this credential; it may write ``custom:`` only."""
        return Actor(f"{self.kind}:{self.id}")

    def require(self, scope: str) -> None:
        """``PermissionDenied`` naming ``scope`` unless this credential carries it."""
        if not scope_allows(self.scopes, scope):
            also = f" (or {scope.removesuffix(':read')})" if scope.endswith(":read") else ""
            raise PermissionDenied(f"this token lacks the {scope} scope{also} needed for this request")


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


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
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
    return OAuthClientInfo(
        row.id, tuple(row.scopes or ()), row.description, row.created_at, row.created_by, row.revoked_at
    )


# -- the store ----------------------------------------------------------------------------------------


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
        parsed_id, secret = parse_client_secret(client_secret)
        if parsed_id != client_id.strip():
            raise AuthenticationError("invalid client credentials")
        now = self.clock()
        with self.db.session() as session:
            client = session.get(OAuthClientRow, parsed_id)
            if not verify_secret(secret, client.secret_hash if client is not None else None) or client is None:
                raise AuthenticationError("invalid client credentials")
            if client.revoked_at is not None:
                raise AuthenticationError("this OAuth client has been revoked")
            granted = tuple(client.scopes or ())
            wanted = normalize_scopes([scope]) if scope and scope.strip() else granted
            beyond = [s for s in wanted if not scope_allows(granted, s)]
            if beyond:
                raise InvalidRequest(
                    f"scope {' '.join(beyond)} is not granted to this client (it has {' '.join(granted)})"
                )
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

    # checking credentials

    def authenticate(self, credential: str) -> Principal:
        """Who presents ``credential`` (an API key or an access token); ``AuthenticationError`` if nobody."""
        credential = credential.strip()
        with self.db.session() as session:
            if credential.startswith(API_KEY_PREFIX):
                return self._check_api_key(session, credential)
            if credential.startswith(ACCESS_TOKEN_PREFIX):
                return self._check_token(session, credential)
        raise AuthenticationError("invalid credentials; send an API key or an OAuth access token")

    def _check_api_key(self, session: Session, credential: str) -> Principal:
        key_id, secret = parse_api_key(credential)
        row = session.get(ApiKeyRow, key_id)
        if not verify_secret(secret, row.secret_hash if row is not None else None) or row is None:
            raise AuthenticationError("invalid API key")
        now = self.clock()
        if row.revoked_at is not None:
            raise AuthenticationError("this API key has been revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthenticationError("this API key has expired")
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=now))
        return Principal("apikey", key_id, frozenset({ALL}))

    def _check_token(self, session: Session, credential: str) -> Principal:
        # The lookup is by the SHA-256 of a 190-bit secret, so it leaks nothing useful about the secret.
        row = session.get(OAuthTokenRow, hash_secret(credential))
        if row is None:
            raise AuthenticationError("invalid access token")
        if row.expires_at <= self.clock():
            raise AuthenticationError("this access token has expired; request a new one")
        client = session.get(OAuthClientRow, row.client_id)
        if client is None or client.revoked_at is not None:
            raise AuthenticationError("this access token's OAuth client has been revoked")
        return Principal("oauth", row.client_id, frozenset(row.scopes or ()))


# -- failed authentications ---------------------------------------------------------------------------


def client_key(address: str) -> str:
    """The rate-limit key of a client address: an IPv4 address as is, an IPv6 address by its /64 network.

    One host usually holds a whole IPv6 /64, so counting single IPv6 addresses would let it rotate freely.
    Anything that is not an IP address is used as is (cut to 100 characters).
    """
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailedAuthLimiter:
    """At most ``limit`` failed authentications per client in a sliding ``window`` (seconds), in memory.

    A client over the limit is refused (``retry_after``) until its oldest failure in the window has aged out;
    successes are neither counted nor reset the count (or one valid credential would let a client guess
    others without limit). Thread-safe. Memory is bounded: at most ``limit`` timestamps for each of at most
    ``max_clients`` clients; clients whose failures all aged out are dropped, and when full the client that
    failed least recently is forgotten.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_clients: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or max_clients < 1:
            raise ValueError("limit, window and max_clients must be positive")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.now = now
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many clients are tracked now."""
        with self._lock:
            return len(self._failures)

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again if it is over the limit, else ``None``."""
        with self._lock:
            now = self.now()
            self._drop_stale(now)
            failures = self._failures.get(client)
            if failures is None:
                return None
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return None
            return max(failures[0] + self.window - now, 0.001)

    def record_failure(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        with self._lock:
            now = self.now()
            failures = self._failures.get(client)
            if failures is None:
                failures = self._failures[client] = deque(maxlen=self.limit)
            else:
                self._failures.move_to_end(client)
            failures.append(now)
            if len(failures) == self.limit and failures[0] > now - self.window:
                log.warning(
                    "%d failed authentications from %s within %gs; refusing its requests for a while",
                    self.limit,
                    client,
                    self.window,
                )
            self._drop_stale(now)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def _drop_stale(self, now: float) -> None:
        """Forget clients whose latest failure left the window (the least recent come first)."""
        while self._failures:
            client, failures = next(iter(self._failures.items()))
            if failures and failures[-1] > now - self.window:
                return
            del self._failures[client]
