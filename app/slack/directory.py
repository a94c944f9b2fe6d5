"""A ``Directory`` backed by the Slack Web API, with a small time-bounded cache."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.access.profiles import Profile

log = logging.getLogger(__name__)


class SlackDirectory:
    """Resolves emails, user ids and user-group handles through Slack (cached for ``ttl`` seconds)."""

    def __init__(self, client: WebClient, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, kind: str, key: str, load: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._cache.get((kind, key))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = load()
        with self._lock:
            self._cache[(kind, key)] = (now, value)
        return value

    def _user(self, user_id: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            try:
                return dict(self.client.users_info(user=user_id)["user"])
            except SlackApiError as exc:
                log.warning("users.info %s failed: %s", user_id, exc.response.get("error"))
                return None

        return self._cached("user", user_id, load)

    def email_of(self, user_id: str) -> str | None:
        """The user's email (needs ``users:read.email``), lower-cased."""
        info = self._user(user_id)
        email = ((info or {}).get("profile") or {}).get("email")
        return email.lower() if isinstance(email, str) else None

    def name_of(self, user_id: str) -> str:
        """A display name for selects: real name, else user name, else the id."""
        info = self._user(user_id) or {}
        profile = info.get("profile") or {}
        return str(profile.get("real_name") or info.get("real_name") or info.get("name") or user_id)

    def user_id_for_email(self, email: str) -> str | None:
        """The user id of an email address, if it belongs to someone in the workspace."""

        def load() -> str | None:
            try:
                return str(self.client.users_lookupByEmail(email=email)["user"]["id"])
            except SlackApiError as exc:
                if exc.response.get("error") != "users_not_found":
                    log.warning("users.lookupByEmail failed: %s", exc.response.get("error"))
                return None

        return self._cached("email", email.lower(), load)

    def group_members(self, handle: str) -> set[str]:
        """Members of the user group whose handle is ``handle`` (without ``@``)."""

        def load() -> set[str]:
            try:
                groups = self.client.usergroups_list()["usergroups"]
                group = next((g for g in groups if g.get("handle") == handle), None)
                if group is None:
                    log.warning("user group @%s not found", handle)
                    return set()
                return set(self.client.usergroups_users_list(usergroup=group["id"])["users"])
            except SlackApiError as exc:
                log.warning("resolving @%s failed: %s", handle, exc.response.get("error"))
                return set()

        return self._cached("group", handle, load)

    def approvers_of(self, profile: Profile) -> set[str]:
        """Everyone who may approve for ``profile`` right now."""
        ids = set(profile.approver_user_ids)
        for email in profile.approver_emails:
            uid = self.user_id_for_email(email)
            if uid:
                ids.add(uid)
        for handle in profile.approver_groups:
            ids.update(self.group_members(handle))
        return ids
