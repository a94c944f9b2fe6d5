"""Access profiles: what can be requested, for how long, and who approves (from the YAML config)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from app.core.timefmt import format_duration, parse_duration
from app.tailnet import rules
from app.tailnet.errors import RuleViolation
from app.tailnet.models import AttributeValue

DEFAULT_DURATIONS = ("30m", "1h", "2h", "4h", "8h")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_GROUP = re.compile(r"@[a-z0-9][a-z0-9._-]*", re.IGNORECASE)
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def as_duration(value: Any) -> Any:
    """Pydantic helper: accept ``30m``-style strings (and plain seconds) for a ``timedelta``."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


class Profile(BaseModel):
    """One kind of access people can request, e.g. production database access."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    description: str = ""
    attribute: str
    value: StrictBool | StrictInt | StrictStr = True
    max_duration: timedelta
    durations: tuple[timedelta, ...] = Field(default_factory=lambda: tuple(map(parse_duration, DEFAULT_DURATIONS)))
    approvers: tuple[str, ...] = Field(min_length=1)
    approvals_required: int = Field(1, ge=1, le=10)
    self_approval: bool = False
    notify_channel: str | None = None
    require_posture: str | None = Field(None, pattern=r"^posture:[A-Za-z0-9_:.-]+$")
    """A posture of the policy file the device must meet, at request time and again at approval."""

    _dur = field_validator("max_duration", mode="before")(classmethod(lambda cls, v: as_duration(v)))

    @field_validator("durations", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(as_duration(v) for v in value)
        return value

    @field_validator("attribute")
    @classmethod
    def _attribute(cls, value: str) -> str:
        try:
            rules.validate_key(value)
        except RuleViolation as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if not (_EMAIL.fullmatch(a) or _GROUP.fullmatch(a) or _SLACK_USER.fullmatch(a))]
        if bad:
            raise ValueError(
                f"approvers must be emails, Slack user ids or user-group handles like @sre-leads; got {bad}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        try:
            rules.validate_value(self.value)
        except RuleViolation as exc:
            raise ValueError(f"value: {exc.message}") from None
        if self.max_duration <= timedelta(0):
            raise ValueError("max_duration must be longer than zero")
        if not self.offered_durations:
            raise ValueError(f"no duration in durations is within max_duration {format_duration(self.max_duration)}")
        individuals = [a for a in self.approvers if not a.startswith("@")]
        if len(individuals) == len(self.approvers) and self.approvals_required > len(set(individuals)):
            raise ValueError(
                f"approvals_required is {self.approvals_required} but only {len(set(individuals))} approvers are listed"
            )
        return self

    @property
    def typed_value(self) -> AttributeValue:
        """The attribute value written on grant."""
        return self.value

    @property
    def offered_durations(self) -> tuple[timedelta, ...]:
        """The durations a requester may pick: the configured ones, capped by ``max_duration``."""
        return tuple(sorted({d for d in self.durations if timedelta(0) < d <= self.max_duration}))

    @property
    def approver_emails(self) -> tuple[str, ...]:
        """Approvers given by email (lower-cased)."""
        return tuple(a.lower() for a in self.approvers if _EMAIL.fullmatch(a))

    @property
    def approver_user_ids(self) -> tuple[str, ...]:
        """Approvers given directly as Slack user ids."""
        return tuple(a for a in self.approvers if _SLACK_USER.fullmatch(a))

    @property
    def approver_groups(self) -> tuple[str, ...]:
        """User-group handles, without the leading ``@``."""
        return tuple(a[1:] for a in self.approvers if a.startswith("@"))

    def label(self) -> str:
        """Human label: the description, or the id."""
        return self.description or self.id
