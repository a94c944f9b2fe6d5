"""Who is who: the domain asks a ``Directory`` (the Slack layer implements it) to resolve people."""

from __future__ import annotations

from typing import Protocol

from app.config.profiles import Profile


class Directory(Protocol):
    """Resolves approver specs (emails, user ids, user-group handles) and users' emails."""

    def approvers_of(self, profile: Profile) -> set[str]:
        """The user ids allowed to approve requests for ``profile`` right now."""
        ...

    def email_of(self, user_id: str) -> str | None:
        """The user's email address, if known."""
        ...


class StaticDirectory:
    """A ``Directory`` from fixed maps, for the CLI and tests."""

    def __init__(self, emails: dict[str, str], groups: dict[str, set[str]] | None = None) -> None:
        self.emails = {uid: email.lower() for uid, email in emails.items()}
        self.groups = groups or {}

    def approvers_of(self, profile: Profile) -> set[str]:
        by_email = {email: uid for uid, email in self.emails.items()}
        ids = {by_email[e] for e in profile.approver_emails if e in by_email}
        ids.update(profile.approver_user_ids)
        for handle in profile.approver_groups:
            ids.update(self.groups.get(handle, set()))
        return ids

    def email_of(self, user_id: str) -> str | None:
        return self.emails.get(user_id)
