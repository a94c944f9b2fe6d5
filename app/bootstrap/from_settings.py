"""Settings turned into values and adapters: the listener and Slack options, the credentials cipher, the tailnet
adapter, the database. Only this package reads ``Settings``."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from app.config.model import Config
from app.config.settings import Settings, get_settings
from app.config.source import ConfigSource
from app.core.clock import Clock, utcnow
from app.core.crypto import KEY_FILE_NAME, Cipher, CipherError, load_or_create_key_file
from app.core.errors import ConfigError
from app.db import Database, sqlite_database_path
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.protocol import Tailnet
from app.tailnet.tailscale import TailscaleTailnet
from app.web.server import ServerLimits


def secret_text(value: SecretStr | None) -> str | None:
    """The value of a secret setting, ``None`` when unset or blank."""
    text = value.get_secret_value().strip() if value is not None else ""
    return text or None


@dataclass(frozen=True)
class ListenerOptions:
    """How this process's HTTP listeners serve: limits, ports, the scrape token and trusted proxies."""

    limits: ServerLimits
    port: int
    metrics_port: int | None
    metrics_host: str
    scrape_token: str | None
    trusted_proxies: str


@dataclass(frozen=True)
class SlackOptions:
    """The Slack credentials of this process (HTTP mode needs the signing secret, Socket Mode the app token)."""

    bot_token: str | None
    signing_secret: str | None
    app_token: str | None
    api_url: str

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token (``xapp-…``) is set; HTTP mode otherwise."""
        return self.app_token is not None

    def missing(self) -> list[str]:
        """Names of the settings ``accessbot serve`` needs but lacks."""
        needed = {"SLACK_BOT_TOKEN": self.bot_token}
        if not self.socket_mode:
            needed["SLACK_SIGNING_SECRET"] = self.signing_secret
        return [name for name, value in needed.items() if not value]


def cipher_for(settings: Settings, *, create_key_file: bool = True) -> Cipher:
    """The cipher of ``ACCESSBOT_SECRET_KEY``, else of the key file beside an SQLite database.

    ``create_key_file=False`` (what a process's services use): a missing key file is created only when something
    is first encrypted, so commands that only read leave none behind; an existing one is read (and checked) at once.
    Raises ``ConfigError`` for PostgreSQL without ``ACCESSBOT_SECRET_KEY`` (no safe place for a key file).
    """
    secret = secret_text(settings.accessbot_secret_key)
    if secret:
        return Cipher.from_secret(secret)
    database = sqlite_database_path(settings.database_url)
    if database is None:
        raise ConfigError(
            "ACCESSBOT_SECRET_KEY must be set to encrypt integration credentials when DATABASE_URL is not "
            "SQLite (a Fernet key, or a passphrase of at least 16 characters)"
        )
    path = database.parent / KEY_FILE_NAME
    if create_key_file or path.exists():
        return Cipher(load_or_create_key_file(path))
    return KeyFileOnFirstWrite(path)


class KeyFileOnFirstWrite(Cipher):
    """The cipher of a key file that does not exist yet: the first ``encrypt`` (a command storing a secret) creates
    it; ``decrypt`` without it is a ``CipherError`` (nothing can have been encrypted with a key that never was)."""

    def __init__(self, path: Path) -> None:  # no key yet: it is created by the first encrypt
        self.path = path
        self._created: Cipher | None = None

    def __repr__(self) -> str:
        return f"KeyFileOnFirstWrite({self.path})"

    def encrypt(self, data: dict[str, str]) -> str:
        """Encrypt with the key file's key, creating the key file (mode 0600, a warning says so) if still absent."""
        if self._created is None:
            self._created = Cipher(load_or_create_key_file(self.path))
        return self._created.encrypt(data)

    def decrypt(self, token: str) -> dict[str, str]:
        """Decrypt with the key file's key; ``CipherError`` when there is no key file."""
        if self._created is None:
            if not self.path.exists():
                raise CipherError(
                    f"cannot decrypt the stored integration credentials: the key file {self.path} is missing; "
                    "restore it from the backup of the database (or set ACCESSBOT_SECRET_KEY if that was used)"
                )
            self._created = Cipher(load_or_create_key_file(self.path))
        return self._created.decrypt(token)


def tailscale_tailnet(
    settings: Settings,
    db: Database,
    *,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> TailscaleTailnet:
    """The Tailscale adapter from ``TAILSCALE_*`` settings; OAuth client credentials win over an API key."""
    return TailscaleTailnet(
        db,
        api_url=settings.tailscale_api_url,
        tailnet=settings.tailscale_tailnet,
        api_key=settings.tailscale_api_key,
        oauth_client_id=settings.tailscale_oauth_client_id,
        oauth_client_secret=settings.tailscale_oauth_client_secret,
        clock=clock,
        sleep=sleep,
        rng=rng,
    )


def tailnet_for(settings: Settings, db: Database, config: Config, *, clock: Clock = utcnow) -> Tailnet:
    """Tailscale credentials present → the Tailscale adapter; otherwise the built-in store."""
    if settings.uses_tailscale:
        return tailscale_tailnet(settings, db, clock=clock)
    return BuiltinTailnet(db, clock=clock, name=config.tailnet.name)


def database(settings: Settings | None = None) -> Database:
    """The database alone, not migrated (``accessbot db`` commands migrate it themselves)."""
    return Database((settings or get_settings()).database_url)


def configured_policy_path(settings: Settings | None = None) -> Path | None:
    """The config's ``policy_file`` (relative paths from the config file's folder), without opening anything else."""
    config = ConfigSource((settings or get_settings()).config_path)
    return config().policy_path(config.path.parent if config.path is not None else None)
