"""Deliver the access flow's outbox to Slack: DMs to approvers and requesters, message updates, channel posts.

Delivery is at-least-once and idempotent: every message posted is remembered by audience, so a retry after
a partial failure updates what exists and posts only what is missing. Notifications of one request are
delivered in order, except the channel announcement of a grant and the admins' alert about a channel: they
are notifications of their own (``Delivery`` kinds, queued when "granted" is delivered), so a notify
channel that refuses posts never holds back a requester's or an approver's DM. A refusal that a retry
cannot cure (``PERMANENT_CHANNEL_ERRORS``) gives the post up at once and tells the admins once per channel
and error; transient errors (429, 5xx, ``ratelimited``) are retried with backoff like any notification.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.outbox import Delivery, FollowUp, Notification, Outbox, PostedMessage
from app.access.read_model import AccessRequest, Notice
from app.access.service import AccessService
from app.db.tables.access import RequestStatus
from app.posture.unlock import Unlock
from app.posture.unlock_source import UnlockPreview
from app.slack.views import break_glass as break_glass_views
from app.slack.views.delivery import admin_alert
from app.slack.views.request_message import Audience, channel_post, notice, request_message

log = logging.getLogger(__name__)

MAX_ROUNDS = 20
"""Bound on claim rounds in one ``deliver`` call (each round after the first follows a delivery)."""

PERMANENT_CHANNEL_ERRORS = frozenset(
    {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "missing_scope"}
)
"""Answers to a channel post that retrying cannot change: an admin has to act (invite the bot, fix the config)."""

DM_CHANNELS_KEPT = 10_000
"""DM channel ids remembered per process (a person's DM with the app never changes its id; past this many the
memory starts again, costing one ``conversations.open`` per person)."""

ADMIN_AUDIENCE = "admin"
"""Audience prefix of the admins' alert DMs (``admin:<user id>:<notification id>``), remembered per admin so a
retried alert does not DM twice."""


class _Outcome(Enum):
    """What became of one claimed notification."""

    DELIVERED = "delivered"
    GAVE_UP = "gave up"  # for good, without a retry (an alert may have been queued)
    RETRY = "retry"  # released for a retry after a backoff


@dataclass(slots=True)
class _Made:
    """What delivering one notification made, written with its completion in one transaction."""

    posted: list[PostedMessage] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)
    channel_works: str | None = None

    def remember(self, audience: str, response: Any) -> None:
        self.posted.append(PostedMessage(audience, str(response["channel"]), str(response["ts"])))


_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_UNREACHABLE_USER = frozenset({"user_not_found", "user_disabled", "cannot_dm_bot"})


class Notifier:
    """Turns outbox notifications into Slack Web API calls."""

    def __init__(
        self, client: WebClient, outbox: Outbox, access: AccessService, unlocks: UnlockPreview | None = None
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.access = access
        self.unlocks = unlocks
        """What a request's attribute would unlock, for its approvers' copy (``None``: never shown)."""
        self._dm_channels: dict[str, str] = {}

    def deliver(self, request_id: int | None = None) -> int:
        """Deliver due notifications (of one request, or all); returns how many were delivered.

        A notification whose request still has an older one undelivered is released at once (not delayed):
        whoever delivers the older one goes on with the next round, and a releaser that finds the older one
        delivered meanwhile claims again, so a follower is never left waiting for the next scheduled run.
        """
        delivered = 0
        for _ in range(MAX_ROUNDS):
            progressed = False
            deferred: list[Notification] = []
            claimed = self.outbox.claim(request_id=request_id)
            while claimed:  # a delivery may add its follow-ups, queued already claimed
                item = claimed.pop(0)
                if self.outbox.earlier_unsent(item):
                    self.outbox.defer(item)
                    deferred.append(item)
                    continue
                outcome = self._try(item, claimed)
                if outcome is _Outcome.DELIVERED:
                    delivered += 1
                if outcome is not _Outcome.RETRY:  # delivered, or given up (which may have queued an alert)
                    progressed = True
            if not progressed and all(self.outbox.earlier_unsent(item) for item in deferred):
                break
        return delivered

    def _try(self, item: Notification, claimed: list[Notification]) -> _Outcome:
        """Deliver one claimed notification (its follow-ups, queued claimed, join ``claimed``); on failure release
        it for a retry after a backoff (a channel post Slack refused for good is given up instead, and the
        channel problem recorded)."""
        made = _Made()
        try:
            self._deliver(item, made)
        except SlackApiError as exc:
            error = str(exc.response.get("error", exc))
            if item.kind == Delivery.CHANNEL_POST and error in PERMANENT_CHANNEL_ERRORS:
                return self._channel_refused(item, error)
            retry_after = exc.response.headers.get("Retry-After") if exc.response.headers else None
            wait = timedelta(seconds=int(retry_after)) if retry_after and str(retry_after).isdigit() else None
            log.warning("delivering %s for request %s failed: %s", item.kind, item.request_id, error)
            self.outbox.failed(item, error, retry_in=wait, posted=made.posted)
        except Exception as exc:  # never lose a notification to an unexpected error
            log.exception("delivering %s for request %s failed", item.kind, item.request_id)
            self.outbox.failed(item, f"{exc.__class__.__name__}: {exc}", posted=made.posted)
        else:
            claimed += self.outbox.done(
                item, then=made.follow_ups, posted=made.posted, channel_works=made.channel_works, claim_then=True
            )
            if made.channel_works:
                log.info("notify channel %s accepts posts", made.channel_works)
            return _Outcome.DELIVERED
        return _Outcome.RETRY

    def _channel_refused(self, item: Notification, error: str) -> _Outcome:
        """Give the post up and record the channel problem (falls back to a plain retry if that fails)."""
        channel = str(item.payload.get("channel", ""))
        profile_id = str(item.payload.get("profile", ""))
        try:
            alerted = self.outbox.channel_refused(item, channel=channel, error=error, profile_id=profile_id)
        except Exception:  # e.g. the database is busy: retry the post later rather than lose it
            log.exception("recording the problem of notify channel %s failed", channel)
            self.outbox.failed(item, error)
            return _Outcome.RETRY
        log.warning(
            "gave up announcing request %s in notify channel %s: Slack said %s (%s)",
            item.request_id,
            channel,
            error,
            "the admins will be told" if alerted else "the admins were told already",
        )
        return _Outcome.GAVE_UP

    def _deliver(self, item: Notification, made: _Made) -> None:
        """Make the Slack calls of one notification, noting in ``made`` what they posted and what to queue once
        it is marked sent (one write transaction per notification: its completion, or its failure)."""
        if item.kind == Delivery.CHANNEL_POST:
            self._post_to_channel(item, made)
            return
        if item.kind == Delivery.CHANNEL_ALERT:
            self._alert_admins(item, made)
            return
        request = self.access.get(item.request_id)
        profile = self.access.profile_for(request)
        label = profile.label() if profile else request.profile_id
        posted = {m.audience: m for m in self.outbox.messages(request.id)}
        unlock = self._unlock(request)
        if item.kind == Notice.REQUESTED:
            for approver in request.approver_ids:
                audience = f"{Audience.APPROVER}:{approver}"
                if audience not in posted:
                    self._post_dm(request, approver, audience, Audience.APPROVER, label, made, unlock)
            if Audience.REQUESTER not in posted:
                self._post_dm(request, request.requester_id, Audience.REQUESTER, Audience.REQUESTER, label, made)
            return
        if item.kind == Notice.BREAK_GLASS_REVIEW_DUE:
            self._remind_reviewers(request, label, posted, item, made)
            return
        self._update_all(request, label, posted, unlock)
        if request.break_glass:
            self._tell_approvers(request, label, posted, made)
        dm = notice(request, item.kind, label, item.payload)
        notice_audience = f"notice:{item.kind}:{item.id}"
        if dm is not None and notice_audience not in posted:
            text, blocks = dm
            channel = self._dm_channel(request.requester_id)
            made.remember(notice_audience, self.client.chat_postMessage(channel=channel, text=text, blocks=blocks))
        announce = item.kind == Notice.GRANTED and profile is not None and profile.notify_channel
        # (a grant delivered by an older release was announced in the same call: never announce it twice)
        if announce and profile is not None and f"{Audience.CHANNEL}:{item.id}" not in posted:
            payload = {"channel": profile.notify_channel, "notice": item.id, "profile": profile.id}
            made.follow_ups.append(FollowUp(Delivery.CHANNEL_POST, payload))

    def _tell_approvers(self, request: AccessRequest, label: str, posted: dict[str, Any], made: _Made) -> None:
        """Break glass: with its first notice (granted, or failed), every approver and the requester get the
        request's message (the approvers' with "Mark reviewed"); later notices update those copies."""
        for approver in request.approver_ids:
            audience = f"{Audience.APPROVER}:{approver}"
            if approver != request.requester_id and audience not in posted:
                self._post_dm(request, approver, audience, Audience.APPROVER, label, made)
        if Audience.REQUESTER not in posted:
            self._post_dm(request, request.requester_id, Audience.REQUESTER, Audience.REQUESTER, label, made)

    def _remind_reviewers(
        self, request: AccessRequest, label: str, posted: dict[str, Any], item: Notification, made: _Made
    ) -> None:
        """Remind each approver of a break-glass grant nobody reviewed yet (each once per reminder, when retried);
        nothing when it was reviewed since the reminder was queued."""
        if not break_glass_views.needs_review(request):
            return
        text, blocks = break_glass_views.reminder(request, label)
        for approver in request.approver_ids:
            audience = f"review:{approver}:{item.id}"
            if approver != request.requester_id and audience not in posted:
                channel = self._dm_channel(approver)
                made.remember(audience, self.client.chat_postMessage(channel=channel, text=text, blocks=blocks))

    def _post_to_channel(self, item: Notification, made: _Made) -> None:
        """Announce a grant in the notify channel it was delivered for; a success resolves that channel's
        problems (so a new failure alerts the admins again)."""
        channel = str(item.payload["channel"])
        audience = f"{Audience.CHANNEL}:{item.payload.get('notice', item.id)}"
        request = self.access.get(item.request_id)
        if audience not in {m.audience for m in self.outbox.messages(request.id)}:
            profile = self.access.profile_for(request)
            text, blocks = channel_post(request, profile.label() if profile else request.profile_id)
            made.remember(audience, self.client.chat_postMessage(channel=channel, text=text, blocks=blocks))
        if channel in self._problem_channels():
            made.channel_works = channel

    def _problem_channels(self) -> set[str]:
        """Channels with an open problem (read only: a post elsewhere resolves nothing, so writes nothing)."""
        return {problem.channel for problem in self.outbox.channel_problems()}

    def _alert_admins(self, item: Notification, made: _Made) -> None:
        """DM every admin of the config about a channel problem (each once, even when retried).

        An admin Slack cannot DM (left the workspace) is skipped; any other failure is raised after the other
        admins were tried, so the alert is retried for those it missed.
        """
        channel, error = str(item.payload["channel"]), str(item.payload["error"])
        profile_id = str(item.payload.get("profile", ""))
        profile = self.access.config().profile(profile_id)
        text, blocks = admin_alert(channel, error, profile.label() if profile else profile_id)
        posted = {m.audience for m in self.outbox.messages(item.request_id)}
        admins = self._admin_ids()
        if not admins:
            log.warning(
                "no admin to tell that notify channel %s refuses posts (%s): set admins in the config", channel, error
            )
        failure: SlackApiError | None = None
        for admin in admins:
            audience = f"{ADMIN_AUDIENCE}:{admin}:{item.id}"
            if audience in posted:
                continue
            try:
                response = self.client.chat_postMessage(channel=self._dm_channel(admin), text=text, blocks=blocks)
            except SlackApiError as exc:
                if exc.response.get("error") in _UNREACHABLE_USER:
                    log.warning("cannot DM admin %s: %s", admin, exc.response.get("error"))
                    continue
                failure = failure or exc
                continue
            made.remember(audience, response)
        if failure is not None:
            raise failure

    def admin_ids(self) -> list[str]:
        """The config's admins as Slack user ids, for reports sent outside the outbox (``app.slack.drift_report``)."""
        return self._admin_ids()

    def dm_channel(self, user_id: str) -> str:
        """The DM channel with ``user_id`` (opened once per person and process)."""
        return self._dm_channel(user_id)

    def _admin_ids(self) -> list[str]:
        """The config's admins as Slack user ids: ids as written, emails looked up (unknown ones skipped)."""
        ids: list[str] = []
        for admin in self.access.config().admins:
            if _USER_ID.fullmatch(admin):
                ids.append(admin)
                continue
            if "@" not in admin[1:]:
                log.warning("admin entry %r is neither a Slack user id nor an email", admin)
                continue
            try:
                ids.append(str(self.client.users_lookupByEmail(email=admin)["user"]["id"]))
            except SlackApiError as exc:
                if exc.response.get("error") != "users_not_found":
                    raise  # Slack busy or down: the alert is retried later
                log.warning("admin %s is not a member of the Slack workspace", admin)
        return list(dict.fromkeys(ids))

    def _unlock(self, request: AccessRequest) -> Unlock | None:
        """What the attribute would unlock on the device, while the request waits for review (then it helps
        the approvers decide; afterwards the section is dropped, sparing the tailnet a read per update)."""
        if self.unlocks is None or request.status != RequestStatus.PENDING:
            return None
        try:
            return self.unlocks(request.device_id, request.attribute, request.value)
        except Exception:  # an optional section never holds back the message it belongs to
            log.exception("could not work out what request %s would unlock", request.id)
            return None

    def _update_all(
        self, request: AccessRequest, label: str, posted: dict[str, Any], unlock: Unlock | None = None
    ) -> None:
        for audience_key, message in posted.items():
            if audience_key.startswith(f"{Audience.APPROVER}:"):
                audience = Audience.APPROVER
            elif audience_key == Audience.REQUESTER:
                audience = Audience.REQUESTER
            else:
                continue
            text, blocks = request_message(request, audience=audience, profile_label=label, unlock=unlock)
            self.client.chat_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)

    def _dm_channel(self, user_id: str) -> str:
        """The DM channel with ``user_id``: opened once per person and process, not once per message (a
        submission to 10 approvers made 11 ``conversations.open`` calls besides its 11 posts)."""
        channel = self._dm_channels.get(user_id)
        if channel is None:
            channel = str(self.client.conversations_open(users=user_id)["channel"]["id"])
            if len(self._dm_channels) >= DM_CHANNELS_KEPT:
                self._dm_channels.clear()
            self._dm_channels[user_id] = channel
        return channel

    def _post_dm(
        self,
        request: AccessRequest,
        user_id: str,
        audience_key: str,
        audience: Audience,
        label: str,
        made: _Made,
        unlock: Unlock | None = None,
    ) -> None:
        text, blocks = request_message(request, audience=audience, profile_label=label, unlock=unlock)
        made.remember(
            audience_key, self.client.chat_postMessage(channel=self._dm_channel(user_id), text=text, blocks=blocks)
        )
