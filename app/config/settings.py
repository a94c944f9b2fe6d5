"""Settings from the environment (pydantic-settings) and the YAML config file."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config.profiles import Profile, as_duration
from app.core.logs import parse_log_format, parse_log_level
from app.core.proxies import parse_proxies
from app.core.timefmt import parse_duration

DEFAULT_CONFIG_FILE = "accessbot.yml"
log = logging.getLogger(__name__)


class ConfigError(Exception):
    """The YAML config file or the environment is invalid; the message says where and why."""


class TailnetConfig(BaseModel):
    """Settings of the built-in tailnet (the embedded default backend)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("example.com", description="Tailnet name accepted in API paths besides '-'")
    expiry_sweep_interval: timedelta = Field(
        timedelta(seconds=30), description="How often expired attributes are purged and audited"
    )

    @field_validator("expiry_sweep_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class Config(BaseModel):
    """The YAML config file (``ACCESSBOT_CONFIG``, default ``accessbot.yml`` when present)."""

    model_config = ConfigDict(extra="forbid")

    tailnet: TailnetConfig = Field(default_factory=TailnetConfig)
    admins: tuple[str, ...] = Field((), description="Slack user ids or emails of accessbot admins")
    request_timeout: timedelta = Field(timedelta(hours=24), description="Unreviewed requests expire after this")
    reminder_before: timedelta = Field(timedelta(minutes=10), description="Remind requesters before expiry")
    profiles: tuple[Profile, ...] = ()
    sync_interval: timedelta = Field(timedelta(minutes=15), description="How often each EDR integration syncs")
    grant_recovery_after: timedelta = Field(
        timedelta(minutes=5),
        description="An approval whose attribute write was interrupted (process killed) is resolved after this; "
        "keep it longer than the slowest attribute write with its retries",
    )
    notification_lease: timedelta = Field(
        timedelta(minutes=2),
        description="How long a process may take to deliver a notification it claimed before another takes it over",
    )
    policy_file: Path | None = Field(
        None, description="The tailnet policy file (HuJSON) for posture checks; relative to the config file"
    )

    @field_validator(
        "request_timeout",
        "reminder_before",
        "sync_interval",
        "grant_recovery_after",
        "notification_lease",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return as_duration(value)

    @model_validator(mode="after")
    def _unique_profiles(self) -> Config:
        seen: set[str] = set()
        for profile in self.profiles:
            if profile.id in seen:
                raise ValueError(f"profile id {profile.id!r} is used twice")
            seen.add(profile.id)
            if profile.require_posture and self.policy_file is None:
                raise ValueError(
                    f"profile {profile.id!r} requires {profile.require_posture}, so policy_file must name the "
                    "tailnet policy file that defines it"
                )
        return self

    def policy_path(self, config_dir: Path | None) -> Path | None:
        """``policy_file`` with ``~`` expanded and a relative path taken from ``config_dir`` (the config's folder)."""
        if self.policy_file is None:
            return None
        path = self.policy_file.expanduser()
        return path if path.is_absolute() or config_dir is None else config_dir / path

    def profile(self, profile_id: str) -> Profile | None:
        """The profile with this id, if configured."""
        return next((p for p in self.profiles if p.id == profile_id), None)

    def is_admin(self, user_id: str, email: str | None) -> bool:
        """Whether a Slack user (by id or email, case-insensitive) is an accessbot admin."""
        folded = {a.lower() for a in self.admins}
        return user_id.lower() in folded or (email is not None and email.lower() in folded)


class Settings(BaseSettings):
    """Process settings, read from environment variables."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = Field("sqlite:///accessbot.db", alias="DATABASE_URL")
    accessbot_config: Path | None = Field(None, alias="ACCESSBOT_CONFIG")
    tailscale_api_url: str = Field("https://api.tailscale.com", alias="TAILSCALE_API_URL")
    tailscale_tailnet: str = Field("-", alias="TAILSCALE_TAILNET")
    tailscale_api_key: SecretStr | None = Field(None, alias="TAILSCALE_API_KEY")
    tailscale_oauth_client_id: str | None = Field(None, alias="TAILSCALE_OAUTH_CLIENT_ID")
    tailscale_oauth_client_secret: SecretStr | None = Field(None, alias="TAILSCALE_OAUTH_CLIENT_SECRET")
    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    port: int = Field(3000, alias="PORT")
    accessbot_secret_key: SecretStr | None = Field(None, alias="ACCESSBOT_SECRET_KEY")
    log_format: str = Field("text", alias="LOG_FORMAT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    metrics_port: int | None = Field(None, alias="METRICS_PORT", ge=0, le=65535)
    metrics_token: SecretStr | None = Field(None, alias="METRICS_TOKEN")
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <token>`` (every server of the process)."""
    trusted_proxies: str = Field("", alias="TRUSTED_PROXIES")
    """Comma-separated IPs/networks of reverse proxies whose ``X-Forwarded-For`` the built-in API believes."""
    # Limits of every HTTP listener (app.web.server.ServerLimits; README "Operations")
    http_threads: int = Field(8, alias="HTTP_THREADS", ge=1, le=256)
    http_connection_limit: int = Field(4096, alias="HTTP_CONNECTION_LIMIT", ge=16, le=1_000_000)
    http_backlog: int = Field(2048, alias="HTTP_BACKLOG", ge=16, le=65535)
    http_idle_timeout: float = Field(30.0, alias="HTTP_IDLE_TIMEOUT", gt=0, le=3600)
    http_read_timeout: float = Field(30.0, alias="HTTP_READ_TIMEOUT", gt=0, le=3600)
    http_max_body_bytes: int = Field(1 << 20, alias="HTTP_MAX_BODY_BYTES", ge=1024, le=1 << 30)

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        return parse_log_format(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return parse_log_level(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        parse_proxies(value)  # refuse a typo at start rather than silently trusting nobody
        return value

    @property
    def scrape_token(self) -> str | None:
        """The bearer token ``/metrics`` requires, or ``None`` when scrapes are open."""
        token = self.metrics_token.get_secret_value() if self.metrics_token else ""
        return token or None

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token (``xapp-…``) is set; HTTP mode otherwise."""
        return bool(self.slack_app_token and self.slack_app_token.get_secret_value())

    def missing_slack_settings(self) -> list[str]:
        """Names of the Slack settings that must be set for ``accessbot serve`` but are not."""
        needed = {"SLACK_BOT_TOKEN": self.slack_bot_token}
        if not self.socket_mode:
            needed["SLACK_SIGNING_SECRET"] = self.slack_signing_secret
        return [name for name, value in needed.items() if not (value and value.get_secret_value())]

    @property
    def uses_tailscale(self) -> bool:
        """True when Tailscale credentials are present (then the Tailscale adapter is used)."""
        return bool(self.tailscale_api_key and self.tailscale_api_key.get_secret_value()) or bool(
            self.tailscale_oauth_client_id and self.tailscale_oauth_client_secret
        )

    def check(self) -> None:
        """Raise ``ConfigError`` for combinations that cannot work."""
        if bool(self.tailscale_oauth_client_id) != bool(self.tailscale_oauth_client_secret):
            raise ConfigError("TAILSCALE_OAUTH_CLIENT_ID and TAILSCALE_OAUTH_CLIENT_SECRET must be set together")

    @property
    def config_path(self) -> Path | None:
        """The YAML file to read: ``ACCESSBOT_CONFIG``, else ``accessbot.yml`` if it exists."""
        if self.accessbot_config is not None:
            return self.accessbot_config
        default = Path(DEFAULT_CONFIG_FILE)
        return default if default.exists() else None

    @cached_property
    def config(self) -> Config:
        """The validated YAML config (defaults when there is no file)."""
        path = self.config_path
        return load_config(path) if path is not None else Config()


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(path: Path) -> Config:
    """Read and validate a YAML config file.

    Raises ``ConfigError`` naming the file, the field and what is wrong.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"field '{_location(err['loc'])}': {err['msg']}" for err in exc.errors(include_url=False))
        raise ConfigError(f"{path}: {problems}") from None


class ConfigSource:
    """The current config, re-read when its file changes (checked at most once per ``min_interval``).

    An invalid new file keeps the previous config and logs why; an invalid file at start raises.
    """

    def __init__(self, path: Path | None, *, min_interval: float = 1.0) -> None:
        self.path = path
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp = self._file_stamp()
        self._config = load_config(path) if path is not None else Config()
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConfigSource:
        """Watch the settings' config file (or serve defaults when there is none)."""
        return cls(settings.config_path)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def __call__(self) -> Config:
        now = time.monotonic()
        if self.path is None or now - self._checked < self.min_interval:
            return self._config
        with self._lock:
            self._checked = now
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return self._config
            self._stamp = stamp
            try:
                self._config = load_config(self.path)
            except ConfigError as exc:
                self.last_error = str(exc)
                log.error("keeping the previous config: %s", exc)
            else:
                self.last_error = None
                log.info("reloaded config from %s", self.path)
            return self._config


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with optional overrides (by alias)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(f"{_location(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in errors)
        raise ConfigError(f"invalid environment: {problems}") from None
    settings.check()
    return settings


def os_user() -> str:
    """The operating-system user name, for ``cli:<user>`` audit actors."""
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"
