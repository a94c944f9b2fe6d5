"""On-call auto-approval: a requester on call for one of the profile's schedules is approved by the schedule.

The domain asks through ``OnCall`` (``who_is_on_call``); ``OnCallSchedules`` answers it with the PagerDuty and
Opsgenie adapters of ``app.oncall`` that the composition root built from the settings. A provider that is not
configured, refuses its token, is rate limited past its budget or down is logged and counts as "not on call":
the request goes to its approvers as usual, and the requester never sees an error.

``AutoApproval.decide`` runs after the pending request is stored (and after Slack's acknowledgement): it moves
the request ``pending -> granting`` with ``transitions.AUTO_APPROVE`` (audit "Access auto-approved" naming the
provider, schedule and window; ``decided_by`` ``pagerduty:PSCHED1``), and the service then writes the attribute
as for any approval, announcing it only after the write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from app.access import scheduling, transitions
from app.access.errors import NOTHING_SAVED, busy_means
from app.access.queries import load_request
from app.config.model import Config
from app.config.oncall import AutoApprove
from app.core.clock import Clock, utcnow
from app.db import Database
from app.db.tables.access import RequestStatus
from app.oncall.base import OnCallError, OnCallMatch

log = logging.getLogger(__name__)

DECIDED_BY_LIMIT = 32
"""``access_requests.decided_by`` holds 32 characters; the full schedule is in ``auto_approval``."""


class OnCall(Protocol):
    """Who is on call, as the domain asks it."""

    def who_is_on_call(self, rule: AutoApprove, email: str, at: datetime) -> OnCallMatch | None:
        """The requester's on-call match for ``rule`` at ``at``; ``None`` when not on call or nobody could tell."""
        ...

    def unconfigured(self, rule: AutoApprove) -> list[str]:
        """The providers ``rule`` names that have no credentials in this process."""
        ...


class PagerDutyLookup(Protocol):
    """``app.oncall.pagerduty.PagerDutyClient`` as used here."""

    def on_call(
        self, email: str, *, schedule_ids: Sequence[str], escalation_policy_ids: Sequence[str], at: datetime
    ) -> OnCallMatch | None: ...


class OpsgenieLookup(Protocol):
    """``app.oncall.opsgenie.OpsgenieClient`` as used here."""

    def on_call(self, email: str, *, schedules: Sequence[str], at: datetime) -> OnCallMatch | None: ...


class OnCallSchedules:
    """``OnCall`` over the providers this process has credentials for (either may be ``None``)."""

    def __init__(self, pagerduty: PagerDutyLookup | None = None, opsgenie: OpsgenieLookup | None = None) -> None:
        self.pagerduty = pagerduty
        self.opsgenie = opsgenie

    def unconfigured(self, rule: AutoApprove) -> list[str]:
        """The providers ``rule`` names that have no credentials in this process."""
        return [name for name in rule.providers if getattr(self, name) is None]

    def who_is_on_call(self, rule: AutoApprove, email: str, at: datetime) -> OnCallMatch | None:
        """Ask each provider of ``rule`` in turn; a failing or unconfigured one is logged and skipped."""
        for provider in rule.providers:
            try:
                match = self._ask(provider, rule, email, at)
            except OnCallError as exc:
                log.warning(
                    "on-call lookup through %s failed; the request goes to its approvers: %s", provider, exc.message
                )
                continue
            except Exception:  # a lookup must never fail a submission
                log.exception("on-call lookup through %s failed; the request goes to its approvers", provider)
                continue
            if match is not None:
                return match
        return None

    def _ask(self, provider: str, rule: AutoApprove, email: str, at: datetime) -> OnCallMatch | None:
        if provider == "pagerduty" and rule.pagerduty is not None:
            if self.pagerduty is None:
                log.warning("a profile auto-approves by PagerDuty on-call but PAGERDUTY_API_TOKEN is not set")
                return None
            return self.pagerduty.on_call(
                email,
                schedule_ids=rule.pagerduty.schedule_ids,
                escalation_policy_ids=rule.pagerduty.escalation_policy_ids,
                at=at,
            )
        if provider == "opsgenie" and rule.opsgenie is not None:
            if self.opsgenie is None:
                log.warning("a profile auto-approves by Opsgenie on-call but OPSGENIE_API_KEY is not set")
                return None
            return self.opsgenie.on_call(email, schedules=rule.opsgenie.schedules, at=at)
        return None


def decided_by(match: OnCallMatch) -> str:
    """``pagerduty:PSCHED1``: who approved, as the request and the tailnet write record it."""
    return f"{match.provider}:{match.schedule}"[:DECIDED_BY_LIMIT]


class AutoApproval:
    """Approve pending requests whose requester is on call for their profile's ``auto_approve`` schedules."""

    def __init__(self, db: Database, config: Callable[[], Config], oncall: OnCall, *, clock: Clock = utcnow) -> None:
        self.db = db
        self.config = config
        self.oncall = oncall
        self.clock = clock

    def decide(self, request_id: int) -> str | None:
        """Move the request to ``granting`` if its requester is on call now; the approver's id, or ``None``.

        A request whose start is ahead is moved to ``scheduled`` instead (``None``: the lifecycle writes it at its
        start, as after a normal approval). ``None`` also when the request is no longer pending (someone approved
        or denied it meanwhile), its profile has no ``auto_approve``, the requester's email is unknown, or no
        provider could tell.
        """
        with self.db.session() as session:
            row = load_request(session, request_id)
            profile = self.config().profile(row.profile_id)
            rule = profile.auto_approve if profile is not None else None
            email, pending = row.requester_email, row.status == RequestStatus.PENDING and not row.break_glass
            starts_at = row.starts_at
        if rule is None or not email or not pending:
            return None
        match = self.oncall.who_is_on_call(rule, email, self.clock())
        if match is None:
            return None
        actor, now = decided_by(match), self.clock()
        window = match.as_json()
        values: dict[str, object] = {"decided_at": now, "decided_by": actor, "auto_approval": window}
        later = scheduling.starts_later(starts_at, now)
        transition = transitions.AUTO_SCHEDULE if later else transitions.AUTO_APPROVE
        if not later:
            values["granting_since"] = now
        with busy_means(NOTHING_SAVED), self.db.session() as session:
            moved = transitions.move(
                session, transition, request_id, actor=actor, at=now, values=values, details=window
            )
        if moved is None:
            log.info("request %s was decided before its on-call auto-approval", request_id)
            return None
        log.info("request %s auto-approved by %s schedule %s", request_id, match.provider, match.label)
        return None if later else actor
