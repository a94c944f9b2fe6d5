from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.timefmt import format_duration, format_rfc3339, parse_duration, parse_rfc3339, parse_when
from tests.conftest import START


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0m", "abc", "5", "m5", "1h-", "1.5h", "30 minutes"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(days=2, seconds=5)) == "2d5s"
    assert format_duration(timedelta(seconds=-3)) == "0s"


def test_rfc3339_round_trip() -> None:
    assert format_rfc3339(parse_rfc3339("2026-11-21T13:00:00+01:00")) == "2026-11-21T12:00:00Z"
    with pytest.raises(ValueError, match="time zone"):
        parse_rfc3339("2026-11-21T13:00:00")


def test_parse_when() -> None:
    assert parse_when("2h", START) == START + timedelta(hours=2)
    assert parse_when("2026-11-22T00:00:00Z", START) == START + timedelta(hours=12)
    with pytest.raises(ValueError, match="invalid time"):
        parse_when("soon", START)


def test_a_duration_from_a_moment_with_a_fraction_is_a_whole_second() -> None:
    assert parse_when("1m", START.replace(microsecond=241396)) == START + timedelta(minutes=1)


def test_rfc3339_nano_keeps_the_fraction_without_trailing_zeros() -> None:
    from app.core.timefmt import format_rfc3339_nano

    assert format_rfc3339_nano(START) == format_rfc3339(START)
    assert format_rfc3339_nano(START.replace(microsecond=120000)).endswith(":00.12Z")
    assert format_rfc3339_nano(START.replace(microsecond=5)).endswith(".000005Z")
