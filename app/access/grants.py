"""What a grant writes to the tailnet, and how to recognise that write later (a grant interrupted mid-write)."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.db.tables.access import AccessRequestRow
from app.tailnet.models import AttributeSet, AttributeWrite

MAX_COMMENT = 200
"""The tailnet's limit on a write's comment."""


def grant_comment(requester: str, reason: str, approvers: list[str]) -> str:
    """``<requester> via accessbot: <reason> (approved by <approvers>)``, cut to 200 characters."""
    tail = f" (approved by {', '.join(approvers)})"
    head = f"{requester} via accessbot: "
    room = MAX_COMMENT - len(head) - len(tail)
    text = reason if len(reason) <= room else reason[: max(room - 1, 0)] + "…"
    return (head + text + tail)[:MAX_COMMENT]


def write_of_interrupted_grant(row: AccessRequestRow, current: AttributeSet, now: datetime) -> AttributeWrite | None:
    """The write a grant still ``granting`` made before it was interrupted, if the device shows it.

    It is that grant's when the attribute has the request's value and an expiry the grant could have set:
    no earlier than ``granting_since`` (a scheduled request: ``starts_at``) + duration (one second of slack), no
    later than ``now`` + duration, so an older grant of the same attribute is not taken for it.
    """
    expires = current.expiries.get(row.attribute)
    duration = timedelta(seconds=row.duration_seconds)
    since = row.starts_at if row.starts_at is not None else row.granting_since  # scheduled: until the window's end
    if (
        current.attributes.get(row.attribute) == row.value
        and expires is not None
        and since is not None
        and since + duration <= expires + timedelta(seconds=1)
        and expires <= now + duration
    ):
        return AttributeWrite(row.value, expires)
    return None
