"""Deliver the access flow's outbox to Slack: DMs to approvers and requesters, message updates, channel posts.

Delivery is at-least-once and idempotent: every message posted is remembered by audience, so a retry after
a partial failure updates what exists and posts only what is missing. Notifications of one request are
delivered in order.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.outbox import Notification, Outbox
from app.access.requests import AccessRequest, Notice
from app.access.service import AccessService
from app.slack.views.request_message import Audience, channel_post, notice, request_message

log = logging.getLogger(__name__)

MAX_ROUNDS = 20
"""Bound on claim rounds in one ``deliver`` call (each round after the first follows a delivery)."""


class Notifier:
    """Turns outbox notifications into Slack Web API calls."""

    def __init__(self, client: WebClient, outbox: Outbox, access: AccessService) -> None:
        self.client = client
        self.outbox = outbox
        self.access = access

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
            for item in self.outbox.claim(request_id=request_id):
                if self.outbox.earlier_unsent(item):
                    self.outbox.defer(item)
                    deferred.append(item)
                elif self._try(item):
                    delivered += 1
                    progressed = True
            if not progressed and all(self.outbox.earlier_unsent(item) for item in deferred):
                break
        return delivered

    def _try(self, item: Notification) -> bool:
        """Deliver one claimed notification; on failure release it for a retry after a backoff."""
        try:
            self._deliver(item)
        except SlackApiError as exc:
            error = str(exc.response.get("error", exc))
            retry_after = exc.response.headers.get("Retry-After") if exc.response.headers else None
            wait = timedelta(seconds=int(retry_after)) if retry_after and str(retry_after).isdigit() else None
            log.warning("delivering %s for request %s failed: %s", item.kind, item.request_id, error)
            self.outbox.failed(item, error, retry_in=wait)
        except Exception as exc:  # never lose a notification to an unexpected error
            log.exception("delivering %s for request %s failed", item.kind, item.request_id)
            self.outbox.failed(item, f"{exc.__class__.__name__}: {exc}")
        else:
            self.outbox.done(item)
            return True
        return False

    def _deliver(self, item: Notification) -> None:
        request = self.access.get(item.request_id)
        profile = self.access.profile_for(request)
        label = profile.label() if profile else request.profile_id
        posted = {m.audience: m for m in self.outbox.messages(request.id)}
        if item.kind == Notice.REQUESTED:
            for approver in request.approver_ids:
                audience = f"{Audience.APPROVER}:{approver}"
                if audience not in posted:
                    self._post_dm(request, approver, audience, Audience.APPROVER, label)
            if Audience.REQUESTER not in posted:
                self._post_dm(request, request.requester_id, Audience.REQUESTER, Audience.REQUESTER, label)
            return
        self._update_all(request, label, posted)
        dm = notice(request, item.kind, label, item.payload)
        notice_audience = f"notice:{item.kind}:{item.id}"
        if dm is not None and notice_audience not in posted:
            text, blocks = dm
            channel = self._dm_channel(request.requester_id)
            response = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            self.outbox.remember(request.id, notice_audience, response["channel"], response["ts"])
        if item.kind == Notice.GRANTED and profile is not None and profile.notify_channel:
            channel_audience = f"{Audience.CHANNEL}:{item.id}"
            if channel_audience not in posted:
                text, blocks = channel_post(request, label)
                response = self.client.chat_postMessage(channel=profile.notify_channel, text=text, blocks=blocks)
                self.outbox.remember(request.id, channel_audience, response["channel"], response["ts"])

    def _update_all(self, request: AccessRequest, label: str, posted: dict[str, Any]) -> None:
        for audience_key, message in posted.items():
            if audience_key.startswith(f"{Audience.APPROVER}:"):
                audience = Audience.APPROVER
            elif audience_key == Audience.REQUESTER:
                audience = Audience.REQUESTER
            else:
                continue
            text, blocks = request_message(request, audience=audience, profile_label=label)
            self.client.chat_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)

    def _dm_channel(self, user_id: str) -> str:
        return str(self.client.conversations_open(users=user_id)["channel"]["id"])

    def _post_dm(self, request: AccessRequest, user_id: str, audience_key: str, audience: Audience, label: str) -> None:
        text, blocks = request_message(request, audience=audience, profile_label=label)
        response = self.client.chat_postMessage(channel=self._dm_channel(user_id), text=text, blocks=blocks)
        self.outbox.remember(request.id, audience_key, response["channel"], response["ts"])
