"""The YAML config file (``ACCESSBOT_CONFIG``, default ``accessbot.yml``): its model and how it is read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.config.identities import check_domains, check_identities
from app.config.profiles import Profile, as_duration
from app.core.errors import ConfigError
from app.core.timefmt import parse_duration

DEFAULT_CONFIG_FILE = "accessbot.yml"


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
    schedule_ahead_max: timedelta = Field(
        timedelta(days=30), description="Scheduled access: how far ahead a request's start may be"
    )
    break_glass_review_every: timedelta = Field(
        timedelta(days=1),
        description="Remind approvers of an unreviewed break-glass grant this long after it, and again every period",
    )
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
    reconcile_interval: timedelta | None = Field(
        timedelta(hours=1),
        description="How often drift reconcile looks for profile attributes held without a grant (0 or none: off)",
    )
    policy_file: Path | None = Field(
        None, description="The tailnet policy file (HuJSON) for posture checks; relative to the config file"
    )
    identities: dict[str, str] = Field(
        default_factory=dict,
        description="Identity binding: Slack user id or email -> Tailscale login (after `accessbot users link`)",
    )
    identity_domains: dict[str, str] = Field(
        default_factory=dict,
        description="Slack email domain -> Tailscale login domain, e.g. corp.example.com: example.com",
    )

    @field_validator(
        "request_timeout",
        "reminder_before",
        "schedule_ahead_max",
        "break_glass_review_every",
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

    @field_validator("reconcile_interval", mode="before")
    @classmethod
    def _off_or_duration(cls, value: Any) -> Any:
        if value is None or value in (0, "0", "none", "off"):
            return None
        return as_duration(value)

    @field_validator("identities")
    @classmethod
    def _identities(cls, value: dict[str, str]) -> dict[str, str]:
        return check_identities(value)

    @field_validator("identity_domains")
    @classmethod
    def _identity_domains(cls, value: dict[str, str]) -> dict[str, str]:
        return check_domains(value)

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


def location(loc: tuple[int | str, ...]) -> str:
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
        problems = "; ".join(f"field '{location(err['loc'])}': {err['msg']}" for err in exc.errors(include_url=False))
        raise ConfigError(f"{path}: {problems}") from None
