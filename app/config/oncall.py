"""A profile's ``auto_approve``: which on-call schedules approve their own people's requests.

``auto_approve: {pagerduty: {schedule_ids: [...], escalation_policy_ids: [...]}}`` or
``auto_approve: {opsgenie: {schedules: [...]}}`` (Opsgenie schedules by id or by name). A requester on call
for one of them when the request is submitted is approved by the schedule; anyone else, or any lookup that
fails, goes to the approvers as usual.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class PagerDutyRule(BaseModel):
    """PagerDuty schedules and/or escalation policies (their ids, e.g. ``PABC123``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule_ids: tuple[str, ...] = Field((), max_length=50)
    escalation_policy_ids: tuple[str, ...] = Field((), max_length=50)

    @model_validator(mode="after")
    def _some(self) -> PagerDutyRule:
        ids = (*self.schedule_ids, *self.escalation_policy_ids)
        if not ids:
            raise ValueError("pagerduty needs at least one of schedule_ids or escalation_policy_ids")
        bad = [i for i in ids if not _valid_id(i)]
        if bad:
            raise ValueError(f"PagerDuty ids look like PABC123; got {bad}")
        return self


class OpsgenieRule(BaseModel):
    """Opsgenie schedules, each by its id (a UUID) or its name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedules: tuple[str, ...] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _names(self) -> OpsgenieRule:
        bad = [s for s in self.schedules if not s.strip() or len(s) > 200]
        if bad:
            raise ValueError(f"Opsgenie schedules are ids or names of 1-200 characters; got {bad}")
        return self


class AutoApprove(BaseModel):
    """The on-call schedules whose people are approved without a click (PagerDuty, Opsgenie, or both)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pagerduty: PagerDutyRule | None = None
    opsgenie: OpsgenieRule | None = None

    @model_validator(mode="after")
    def _some(self) -> AutoApprove:
        if self.pagerduty is None and self.opsgenie is None:
            raise ValueError("auto_approve needs pagerduty or opsgenie")
        return self

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers this rule asks, in the order they are asked."""
        return tuple(name for name in ("pagerduty", "opsgenie") if getattr(self, name) is not None)


def _valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None
