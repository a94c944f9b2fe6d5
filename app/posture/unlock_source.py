"""Where "what will this unlock" gets its policy and the device's attributes.

The policy is the config's ``policy_file`` when there is one; otherwise, on a real tailnet, the tailnet's own
policy fetched through the Tailscale adapter (``GET /api/v2/tailnet/{tailnet}/acl``, OAuth scope
``policy_file:read``), kept for a TTL. Every
failure (no policy, an unreadable policy, an API error, an unknown device) gives ``None``: the preview is a
help for the reader, so its section is left out rather than holding back the message it belongs to. Callers
run off Slack's acknowledgement path (the outbox delivery, the modal's refresh on the work pool).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.posture.policy import Policy, parse_policy
from app.posture.unlock import Unlock, postures_using, what_unlocks
from app.tailnet.errors import TailnetError
from app.tailnet.models import AttributeValue
from app.tailnet.protocol import Tailnet

log = logging.getLogger(__name__)

POLICY_TTL = 300.0
"""Seconds a fetched tailnet policy is used before it is fetched again."""
FAILURE_TTL = 60.0
"""Seconds after a failed fetch before the next try (the last good policy, if any, is used meanwhile)."""


class FetchedPolicy:
    """The tailnet's policy file, fetched with ``fetch`` (its text) and cached for ``ttl`` seconds.

    A failed fetch or a policy that is not valid HuJSON keeps the previous policy (``None`` before the first
    good one) and is not tried again for ``failure_ttl`` seconds, so a down API costs one slow call a minute.
    """

    def __init__(
        self,
        fetch: Callable[[], str],
        *,
        source: str = "tailnet policy",
        ttl: float = POLICY_TTL,
        failure_ttl: float = FAILURE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._source = source
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._next_fetch: float | None = None
        self.last_error: str | None = None

    def __call__(self) -> Policy | None:
        with self._lock:  # one fetch at a time; the others wait for its answer rather than fetch again
            now = self._monotonic()
            if self._next_fetch is None or now >= self._next_fetch:
                self._refresh(now)
            return self._policy

    def _refresh(self, now: float) -> None:
        try:
            text = self._fetch()
        except TailnetError as exc:
            self._failed(now, exc.message)
            return
        policy = parse_policy(text, self._source)
        if policy.syntax_error is not None:
            self._failed(now, f"the tailnet policy is not valid HuJSON: {policy.syntax_error}")
            return
        self._policy, self.last_error, self._next_fetch = policy, None, now + self._ttl

    def _failed(self, now: float, message: str) -> None:
        """Note the failure; warn once per distinct error (a missing scope would otherwise warn every minute)."""
        level = logging.DEBUG if message == self.last_error else logging.WARNING
        log.log(level, "could not fetch the tailnet policy for 'what will this unlock': %s", message)
        self.last_error, self._next_fetch = message, now + self._failure_ttl


def unlock_policy(
    policy_file: Callable[[], Policy | None], fetched: Callable[[], Policy | None] | None
) -> Callable[[], Policy | None]:
    """The configured policy file if there is one, else the fetched tailnet policy (if the tailnet has one)."""

    def current() -> Policy | None:
        policy = policy_file()
        if policy is None and fetched is not None:
            return fetched()
        return policy

    return current


class UnlockPreview:
    """``preview(device_id, key, value)``: what the attribute would unlock on that device, or ``None``."""

    def __init__(self, tailnet: Tailnet, policy: Callable[[], Policy | None]) -> None:
        self.tailnet = tailnet
        self.policy = policy

    def __call__(self, device_id: str, key: str, value: AttributeValue) -> Unlock | None:
        """``None`` when there is no policy or the device's attributes cannot be read."""
        policy = self.policy()
        if policy is None:
            return None
        if not postures_using(policy, key):  # the answer needs no device: spare the tailnet a call
            return what_unlocks(policy, {}, key, value)
        try:
            attributes = self.tailnet.get_attributes(device_id).attributes
        except TailnetError as exc:
            log.info("no unlock preview for device %s: %s", device_id, exc.message)
            return None
        return what_unlocks(policy, attributes, key, value)
