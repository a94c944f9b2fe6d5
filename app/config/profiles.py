"""Access profiles: what can be requested, for how long, and who approves (from the YAML config)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

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

from app.config.oncall import AutoApprove
from app.core.timefmt import format_duration, parse_duration
from app.tailnet import rules
from app.tailnet.errors import RuleViolation
from app.tailnet.models import AttributeValue

DEFAULT_DURATIONS = ("30m", "1h", "2h", "4h", "8h")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_GROUP = re.compile(r"@[a-z0-9][a-z0-9._-]*", re.IGNORECASE)
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


_TAG = re.compile(r"tag:[A-Za-z][A-Za-z0-9-]*")
DEVICES_HELP = "devices must be 'own', 'any' or {own_or_tagged: [tag:name, ...]}"


class OwnOrTagged(BaseModel):
    """Device eligibility ``{own_or_tagged: [tag:x, ...]}``: own devices plus devices carrying a listed tag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    own_or_tagged: tuple[str, ...] = Field(min_length=1)

    @field_validator("own_or_tagged")
    @classmethod
    def _tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in value if not _TAG.fullmatch(t)]
        if bad:
            raise ValueError(f"own_or_tagged lists tags like tag:prod-db (letters, digits, dashes); got {bad}")
        return value


DeviceScope = Literal["own", "any"] | OwnOrTagged
"""Which devices a profile may be requested for (``app.access.eligibility``); default ``own``."""


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
    break_glass: bool = False
    """Break-glass: the requester may grant it to themselves at once (announced to every approver, reviewed after)."""
    break_glass_max_duration: timedelta = timedelta(hours=1)
    """The longest break-glass grant (at most ``max_duration``)."""
    break_glass_min_reason: int = Field(20, ge=1, le=200)
    """The fewest characters a break-glass reason must have."""
    devices: DeviceScope = "own"
    """Which devices may be chosen: checked in the picker, at submit and again before the write."""
    remove_unexplained: bool = False
    """Drift reconcile: the scheduled job removes this attribute from devices that hold it with no active grant."""
    auto_approve: AutoApprove | None = None
    """On-call auto-approval (``app.config.oncall``): a requester on call for a listed schedule needs no click."""

    _dur = field_validator("max_duration", "break_glass_max_duration", mode="before")(
        classmethod(lambda cls, v: as_duration(v))
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("own", "any"):
            raise ValueError(f"{DEVICES_HELP}; got {value!r}")
        if not isinstance(value, str | dict | OwnOrTagged):
            raise ValueError(DEVICES_HELP)
        return value

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
        if self.break_glass:
            self._check_break_glass()
        individuals = [a for a in self.approvers if not a.startswith("@")]
        if len(individuals) == len(self.approvers) and self.approvals_required > len(set(individuals)):
            raise ValueError(
                f"approvals_required is {self.approvals_required} but only {len(set(individuals))} approvers are listed"
            )
        return self

    def _check_break_glass(self) -> None:
        """A break-glass cap must be positive, within ``max_duration``, and leave a duration to offer."""
        cap = self.break_glass_max_duration
        if cap <= timedelta(0):
            raise ValueError("break_glass_max_duration must be longer than zero")
        if cap > self.max_duration and "break_glass_max_duration" in self.model_fields_set:
            raise ValueError(
                f"break_glass_max_duration {format_duration(cap)} is longer than max_duration "
                f"{format_duration(self.max_duration)}; make it shorter"
            )
        if not self.break_glass_durations:
            raise ValueError(
                f"no duration in durations is within break_glass_max_duration {format_duration(self.break_glass_cap)}"
            )

    @property
    def break_glass_cap(self) -> timedelta:
        """The longest break-glass grant: ``break_glass_max_duration`` (the default never exceeds ``max_duration``)."""
        return min(self.break_glass_max_duration, self.max_duration)

    @property
    def break_glass_durations(self) -> tuple[timedelta, ...]:
        """The durations a break-glass request may pick: the offered ones within the break-glass cap."""
        return tuple(d for d in self.offered_durations if d <= self.break_glass_cap)

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
