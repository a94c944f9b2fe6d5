"""Parsing and formatting of durations and RFC 3339 timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

ZERO_TIME = "0001-01-01T00:00:00Z"
"""What the official Go client sends for an unset expiry; means "no expiry"."""

_DURATION_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``30m``, ``2h``, ``1d``, ``1w`` or combinations such as ``1h30m``.

    Raises ``ValueError`` with a message that says what was expected.
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration; expected something like 30m, 2h or 1d")
    pos = 0
    total = timedelta()
    for match in _DURATION_PART.finditer(cleaned):
        if match.start() != pos:
            break
        try:
            total += timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
        except OverflowError:
            raise ValueError(f"duration {text!r} is too long") from None
        pos = match.end()
    if pos != len(cleaned):
        raise ValueError(f"invalid duration {text!r}; expected something like 30m, 2h, 1d or 1h30m")
    if total <= timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    return total


def format_duration(delta: timedelta) -> str:
    """Format a duration compactly: ``1h30m``, ``45s``, ``2d3h``."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or a numeric offset) into an aware UTC datetime."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp; expected RFC 3339 such as 2026-01-02T15:04:05Z")
    if value[-1] in "zZ":
        value = value[:-1] + "+00:00"
    value = value.replace("t", "T", 1) if "T" not in value else value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"invalid timestamp {text!r}; expected RFC 3339 such as 2026-01-02T15:04:05Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone; add Z or an offset such as +00:00")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp {text!r} is out of range") from None


def format_rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with a ``Z`` suffix (second precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_rfc3339_nano(moment: datetime) -> str:
    """RFC 3339 in UTC as Go's ``time.RFC3339Nano`` writes it (Tailscale's API is Go): the fraction of a second
    kept, trailing zeros dropped, none when whole (``...T13:00:00.12Z``, ``...T13:00:00Z``)."""
    moment = moment.astimezone(UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def parse_when(text: str, now: datetime) -> datetime:
    """Parse either a duration from ``now`` (``30m``) or an absolute RFC 3339 time."""
    try:
        return (now + parse_duration(text)).replace(microsecond=0)  # "in 1m" means a whole second, as typed
    except ValueError:
        pass
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}; expected a duration such as 30m or 2h, or RFC 3339 such as 2026-01-02T15:04:05Z"
        ) from None
