"""Errors of the access flow, each with a message fit to show the person who acted."""

from __future__ import annotations


class AccessError(Exception):
    """Base: the action was refused; ``message`` says why in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAllowed(AccessError):
    """The person is not allowed to do this."""


class AlreadyDecided(AccessError):
    """The request is no longer in a state that allows this (someone else acted first)."""


class RequestNotFound(AccessError):
    """No such request."""


class SubmissionInvalid(AccessError):
    """A request form has errors; ``errors`` maps field name → message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class DatabaseBusy(AccessError):
    """The database stayed locked by another writer past its busy timeout; the message says what was saved."""


class DirectoryUnavailable(AccessError):
    """Who may do what could not be resolved now (Slack rate-limited or down): nothing was changed."""
