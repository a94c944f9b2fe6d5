"""Tell the admins about drift findings, by DM, outside the outbox.

The findings' own rows make "once" hold (``app.access.drift.claim_unreported``): the reconcile job claims them,
calls ``DriftReporter`` and releases them when nobody could be told, so a later run retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.drift import Finding
from app.config.model import Config
from app.slack.notify import Notifier
from app.slack.views.drift import drift_report

log = logging.getLogger(__name__)

_UNREACHABLE_USER = frozenset({"user_not_found", "user_disabled", "cannot_dm_bot", "account_inactive"})


class DriftReporter:
    """``report(findings) -> bool`` for ``Reconciler.run``: one DM per admin listing the findings."""

    def __init__(self, client: WebClient, notifier: Notifier, config: Callable[[], Config]) -> None:
        self.client = client
        self.notifier = notifier
        self.config = config

    def __call__(self, findings: list[Finding]) -> bool:
        """DM every admin; True when at least one was told (an admin Slack cannot DM is skipped). Nobody told,
        or no admin configured: False, and the findings are reported again by a later run."""
        admins = self.notifier.admin_ids()
        if not admins:
            log.warning("no admin to tell about %d drift finding(s): set admins in the config", len(findings))
            return False
        config = self.config()

        def label(profile_id: str) -> str:
            profile = config.profile(profile_id)
            return profile.label() if profile else profile_id

        text, blocks = drift_report(findings, label)
        told, missed = 0, []
        for admin in admins:
            try:
                self.client.chat_postMessage(channel=self.notifier.dm_channel(admin), text=text, blocks=blocks)
            except SlackApiError as exc:
                error = str(exc.response.get("error", exc))
                if error not in _UNREACHABLE_USER:
                    missed.append(f"{admin} ({error})")
                log.warning("cannot DM admin %s about drift: %s", admin, error)
                continue
            told += 1
        if missed and told:
            log.warning("drift reported to %d admin(s); not to %s", told, ", ".join(missed))
        return told > 0
