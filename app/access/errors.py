"""Errors of the access flow, each with a message fit to show the person who acted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import OperationalError

from app.db.session import is_locked


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


NOTHING_SAVED = "accessbot's database is busy (another write held it too long), so nothing was changed. Try again."


def unsettled(request_id: int, *, written: bool) -> str:
    """What to say when the attribute write is done (or failed) but its result could not be recorded yet."""
    outcome = "was written" if written else "could not be written"
    return (
        f"The attribute {outcome}, but accessbot's database is busy, so request {request_id} is not settled yet; "
        "accessbot settles it by itself within a few minutes."
    )


@contextlib.contextmanager
def busy_means(message: str) -> Iterator[None]:
    """Turn SQLite's "database is locked" (the write lock held past the busy timeout, the transaction rolled back)
    into ``DatabaseBusy(message)``, which the Slack layer shows to the person who acted."""
    try:
        yield
    except OperationalError as exc:
        if not is_locked(exc):
            raise
        raise DatabaseBusy(message) from exc
