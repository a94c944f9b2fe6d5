"""Credential formats of the built-in HTTP API: random secrets, their hashes, and Tailscale-style key strings.

Secrets are random (``secrets``, ≥ 128 bits) and only their SHA-256 is stored. Formats follow Tailscale's:
an API key is ``tskey-api-<id>-<secret>``, an OAuth client secret ``tskey-client-<client id>-<secret>``;
an access token issued to a client is ``tskey-access-<secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from app.tailnet.errors import AuthenticationError

API_KEY_PREFIX = "tskey-api-"
CLIENT_SECRET_PREFIX = "tskey-client-"  # noqa: S105 - a prefix, not a secret
ACCESS_TOKEN_PREFIX = "tskey-access-"  # noqa: S105

_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 32  # 32 * log2(62) = about 190 bits
_ID_BODY_LENGTH = 12
_ID = re.compile(r"k[A-Za-z0-9]{4,40}CNTRL")
_SECRET = re.compile(r"[A-Za-z0-9]{16,128}")


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
    """(id, secret) of ``<prefix><id>-<secret>``; ``AuthenticationError`` naming ``what`` if it is not shaped so."""
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
