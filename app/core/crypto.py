"""Integration credentials encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256).

Where the key comes from (``app.bootstrap.cipher_for``):

- ``ACCESSBOT_SECRET_KEY`` — either a Fernet key (``Fernet.generate_key()``: 32 url-safe base64 bytes), or any
  passphrase of at least 16 characters, turned into a key with HKDF-SHA256 (no salt, info ``HKDF_INFO``). A
  passphrase is not stretched, so make it long and random.
- Otherwise, for the embedded default (SQLite): a key file ``accessbot.key`` beside the database file, created
  with mode 0600 on first use (a warning says so once, and that it must be backed up with the database).
  A key file readable or writable by group or others is refused.
- Otherwise (PostgreSQL): ``ConfigError`` — ``ACCESSBOT_SECRET_KEY`` must be set.

Neither the key nor anything decrypted is ever logged.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE_NAME = "accessbot.key"
"""The key file of the embedded default, created beside the SQLite database file."""

HKDF_INFO = b"accessbot integration credentials v1"
"""The fixed HKDF ``info`` that turns an ``ACCESSBOT_SECRET_KEY`` passphrase into a Fernet key."""

MIN_PASSPHRASE_LENGTH = 16


class CipherError(Exception):
    """Stored credentials cannot be decrypted (wrong key) or are not what accessbot wrote."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def derive_key(passphrase: str) -> bytes:
    """The Fernet key of a passphrase: HKDF-SHA256 with info ``HKDF_INFO``, url-safe base64."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(passphrase.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


def _fernet_or_none(text: str) -> Fernet | None:
    try:
        return Fernet(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


class Cipher:
    """Encrypts a dict of strings into a Fernet token and back."""

    def __init__(self, key: bytes | str) -> None:
        """``key`` is a Fernet key; ``ValueError`` if it is not one."""
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "Cipher(<key hidden>)"

    @classmethod
    def from_secret(cls, secret: str) -> Cipher:
        """A Fernet key as is, or a passphrase of at least 16 characters through HKDF; ``ConfigError`` otherwise."""
        secret = secret.strip()
        if _fernet_or_none(secret) is not None:
            return cls(secret)
        if len(secret) < MIN_PASSPHRASE_LENGTH:
            raise ConfigError(
                "ACCESSBOT_SECRET_KEY must be a Fernet key or a passphrase of at least "
                f"{MIN_PASSPHRASE_LENGTH} characters"
            )
        return cls(derive_key(secret))

    def encrypt(self, data: dict[str, str]) -> str:
        """A Fernet token (ASCII) of ``data`` as JSON."""
        return self._fernet.encrypt(json.dumps(data, sort_keys=True).encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> dict[str, str]:
        """The dict ``encrypt`` was given; ``CipherError`` if the key is not the one it was encrypted with."""
        try:
            plain = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise CipherError(
                "cannot decrypt the stored integration credentials with the current key; was ACCESSBOT_SECRET_KEY "
                f"changed? (When it is not set, the key is the {KEY_FILE_NAME} file beside the SQLite database.)"
            ) from None
        try:
            data = json.loads(plain)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise CipherError("the stored integration credentials are not a JSON object of strings")
        return data


def load_or_create_key_file(path: Path) -> bytes:
    """The Fernet key in ``path``, created (mode 0600, atomically) when absent.

    ``ConfigError`` if the file is accessible by group or others, or does not hold a key.
    """
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)  # atomic, and fails if another process created the key file meanwhile
        except FileExistsError:
            return _read_key_file(path)
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the key file {path}: {exc.strerror or exc}") from None
    log.warning(
        "created %s to encrypt integration credentials (no ACCESSBOT_SECRET_KEY is set); back it up together "
        "with the database: without it the stored credentials cannot be decrypted",
        path,
    )
    return key


def _read_key_file(path: Path) -> bytes:
    """The key in an existing key file; ``FileNotFoundError`` when there is none."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the key file {path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise ConfigError(
            f"the key file {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"restrict it with: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if _fernet_or_none(text) is None:
        raise ConfigError(f"the key file {path} does not hold a Fernet key")
    return text.encode("ascii")
