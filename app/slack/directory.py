"""A ``Directory`` backed by the Slack Web API, with a small time-bounded cache of successful answers.

Only answers are cached: "no such user" is an answer, a 429 or an outage is not. Caching an error as
"nobody" once refused an approver for five minutes after Slack had been busy for one second; now a lookup
that fails raises ``DirectoryUnavailable`` (the person is told Slack is busy and nothing changed) and the
next click asks Slack again. The WebClient's retry handlers (``slack_client``) already waited out a short
``Retry-After`` before that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from app.access.errors import DirectoryUnavailable
from app.config.profiles import Profile

log = logging.getLogger(__name__)

BUSY = "Slack is busy right now, so I could not check who may do this; nothing was changed. Try again in a minute."

ANSWERS = frozenset({"user_not_found", "users_not_found", "no_such_subteam", "subteam_not_found"})
"""Slack errors that are answers about the thing asked for (cached like any answer)."""


class SlackDirectory:
    """Resolves emails, user ids and user-group handles through Slack (answers cached for ``ttl`` seconds)."""

    def __init__(self, client: WebClient, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every answer (the next lookups ask Slack again)."""
        with self._lock:
            self._cache.clear()

    def _fresh(self, kind: str, key: str) -> tuple[bool, Any]:
        now = self.clock()
        with self._lock:
            hit = self._cache.get((kind, key))
        if hit is not None and now - hit[0] < self.ttl:
            return True, hit[1]
        return False, None

    def _store(self, kind: str, key: str, value: Any) -> None:
        with self._lock:
            self._cache[(kind, key)] = (self.clock(), value)

    def _cached(self, kind: str, key: str, load: Callable[[], Any]) -> Any:
        found, value = self._fresh(kind, key)
        if found:
            return value
        try:
            value = load()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc)
            log.warning("Slack lookup %s %s failed: %s", kind, key, error)
            raise DirectoryUnavailable(BUSY) from exc
        except SlackClientError as exc:  # unreachable, timed out
            log.warning("Slack lookup %s %s failed: %s", kind, key, exc)
            raise DirectoryUnavailable(BUSY) from exc
        self._store(kind, key, value)
        return value

    @staticmethod
    def _answer_or_raise(exc: SlackApiError) -> None:
        if exc.response.get("error") not in ANSWERS:
            raise exc

    def _user(self, user_id: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            try:
                return dict(self.client.users_info(user=user_id)["user"])
            except SlackApiError as exc:
                self._answer_or_raise(exc)
                return None

        return self._cached("user", user_id, load)

    def remember_user(self, user: dict[str, Any]) -> None:
        """Cache a user object Slack sent anyway (``users.list`` at start, or a lookup's answer)."""
        if isinstance(user.get("id"), str):
            self._store("user", user["id"], dict(user))

    def warm(self, page_limit: int = 200, max_pages: int = 500) -> int:
        """Load every workspace member into the cache (``users.list``, paged); returns how many.

        Run at start, off the request path, so options loads can answer "your devices" from memory.
        """
        count, cursor = 0, None
        for _ in range(max_pages):
            response = self.client.users_list(limit=page_limit, cursor=cursor)
            for member in response.get("members") or []:
                if isinstance(member, dict) and not member.get("deleted"):
                    self.remember_user(member)
                    count += 1
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return count

    def known_email(self, user_id: str) -> str | None:
        """The user's email if it is in memory, however old (never asks Slack: for the options path).

        Past ``ttl`` it is still the best answer for ranking the person's own devices first; asking Slack again
        for everyone whose entry expired would put a ``users.info`` per person behind every burst of options
        loads (the next request form the person opens refreshes it, off the acknowledgement).
        """
        with self._lock:
            hit = self._cache.get(("user", user_id))
        return _email(hit[1]) if hit is not None else None

    def email_of(self, user_id: str) -> str | None:
        """The user's email (needs ``users:read.email``), lower-cased; ``DirectoryUnavailable`` if Slack fails."""
        return _email(self._user(user_id))

    def name_of(self, user_id: str) -> str:
        """A display name for selects: real name, else user name, else the id (never raises)."""
        try:
            info = self._user(user_id) or {}
        except DirectoryUnavailable:
            info = {}
        profile = info.get("profile") or {}
        return str(profile.get("real_name") or info.get("real_name") or info.get("name") or user_id)

    def user_id_for_email(self, email: str) -> str | None:
        """The user id of an email address, if it belongs to someone in the workspace."""

        def load() -> str | None:
            try:
                user = self.client.users_lookupByEmail(email=email)["user"]
            except SlackApiError as exc:
                self._answer_or_raise(exc)
                return None
            self.remember_user(dict(user))
            return str(user["id"])

        return self._cached("email", email.lower(), load)

    def group_members(self, handle: str) -> set[str]:
        """Members of the user group whose handle is ``handle`` (without ``@``; case does not matter)."""
        wanted = handle.lstrip("@").casefold()

        def load() -> set[str]:
            groups = self.client.usergroups_list()["usergroups"]
            group = next((g for g in groups if str(g.get("handle") or "").casefold() == wanted), None)
            if group is None:
                log.warning("user group @%s not found", handle)
                return set()
            try:
                return set(self.client.usergroups_users_list(usergroup=group["id"])["users"])
            except SlackApiError as exc:
                self._answer_or_raise(exc)
                return set()

        return self._cached("group", wanted, load)

    def approvers_of(self, profile: Profile) -> set[str]:
        """Everyone who may approve for ``profile`` right now (``DirectoryUnavailable`` if Slack fails)."""
        ids = set(profile.approver_user_ids)
        for email in profile.approver_emails:
            uid = self.user_id_for_email(email)
            if uid:
                ids.add(uid)
        for handle in profile.approver_groups:
            ids.update(self.group_members(handle))
        return ids


def _email(info: dict[str, Any] | None) -> str | None:
    email = ((info or {}).get("profile") or {}).get("email")
    return email.lower() if isinstance(email, str) and email else None
