"""Process settings from environment variables (pydantic-settings). Only ``app.bootstrap`` reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config.model import DEFAULT_CONFIG_FILE, location
from app.core.errors import ConfigError
from app.core.logs import parse_log_format, parse_log_level
from app.core.proxies import parse_proxies


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
    # On-call auto-approval (app.oncall; profiles' auto_approve)
    pagerduty_api_token: SecretStr | None = Field(None, alias="PAGERDUTY_API_TOKEN")
    pagerduty_base_url: str = Field("https://api.pagerduty.com", alias="PAGERDUTY_BASE_URL")
    opsgenie_api_key: SecretStr | None = Field(None, alias="OPSGENIE_API_KEY")
    opsgenie_base_url: str = Field("https://api.opsgenie.com", alias="OPSGENIE_BASE_URL")
    """``https://api.eu.opsgenie.com`` for Opsgenie's EU instance."""
    port: int = Field(3000, alias="PORT")
    accessbot_secret_key: SecretStr | None = Field(None, alias="ACCESSBOT_SECRET_KEY")
    log_format: str = Field("text", alias="LOG_FORMAT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    metrics_port: int | None = Field(None, alias="METRICS_PORT", ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", alias="METRICS_HOST", min_length=1)
    """Address of the ``METRICS_PORT`` listener (``0.0.0.0`` to let a scraper on another host in)."""
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


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with optional overrides (by alias)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(f"{location(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in errors)
        raise ConfigError(f"invalid environment: {problems}") from None
    settings.check()
    return settings
