from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.tailnet.versions import compare_versions, parse_ts_version, release_track


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.40", "1.40", 0),
        ("1.40", "1.40.0", 0),
        ("1.40.0", "1.40.0.0", 0),
        ("1.40.0", "1.40.1", -1),
        ("1.40", "1.40.1", -1),
        ("1.40.1", "1.100", -1),
        ("1.99.9", "1.100", -1),
        ("1.9", "1.10", -1),
        ("1.040", "1.40", 0),
        ("2", "1.100.100", 1),
        ("10.0.26200.7781", "10.0.22631.4602", 1),
        ("10.0.22631.4602", "10.0.22631.4603", -1),
        ("10.0.22631", "10.0.22631.0", 0),
        ("14.5", "14.10", -1),
        ("22.3.2.23", "22.3.10.1", -1),
        ("99999999999999999999.1", "99999999999999999999.0", 1),
        # A trailing non-digit part is a build of that version: after it, before the next release.
        ("1.40.0-t1234", "1.40.0", 1),
        ("1.40.0-t1234", "1.40", 1),
        ("1.40.0-t1234", "1.40.1", -1),
        ("1.40.0-t1234", "1.40.0-t999", 1),
        ("1.40.0-t1234", "1.40.0-t1234", 0),
        ("1.40.0-t1234-gabc", "1.40.0-t1234", 1),
        ("1.40-beta", "1.40", 1),
        ("1.40-beta", "1.41", -1),
        # Text parts compare as text (code points).
        ("1.40a", "1.40b", -1),
        ("abc", "abd", -1),
        ("", "0", 0),
        ("", "0.0", 0),
        ("", "1", -1),
        (" 1.40 ", "1.40.0", 0),
    ],
)
def test_compare_versions(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_documented_chain_is_ordered() -> None:
    chain = ["1.38.2", "1.40", "1.40.0-t1234", "1.40.1", "1.99", "1.100", "10.0.22631.4602", "10.0.26200.7781"]
    for lower, higher in itertools.pairwise(chain):
        assert compare_versions(lower, higher) == -1, (lower, higher)


_versions = st.lists(
    st.one_of(st.integers(0, 300).map(str), st.sampled_from([".", "-", "-t", "+", "a", "rc", ".0", ".00"])),
    max_size=7,
).map("".join)


@given(_versions, _versions, _versions)
def test_compare_versions_is_a_total_order(a: str, b: str, c: str) -> None:
    assert compare_versions(a, a) == 0
    assert compare_versions(a, b) == -compare_versions(b, a)
    if compare_versions(a, b) <= 0 and compare_versions(b, c) <= 0:
        assert compare_versions(a, c) <= 0


@given(_versions)
def test_trailing_zero_parts_are_insignificant(a: str) -> None:
    assert compare_versions(a + ".0", a + ".0.0") == 0


@pytest.mark.parametrize(
    ("client_version", "expected"),
    [
        ("1.40.0-t1234-gabc", "1.40.0"),
        ("1.36.0-t3c2c1f1b7-g7b6e4c3b6", "1.36.0"),
        ("1.76.1", "1.76.1"),
        ("v1.76.1", "1.76.1"),
        (" 1.76.1 ", "1.76.1"),
        ("1.40", "1.40"),
        ("1.40.0+build5", "1.40.0"),
        ("", None),
        ("garbage", None),
        ("1", None),
        ("1.", None),
        ("1.40.0garbage", None),
        ("x1.40.0", None),
        ("1.40.0.1.2", None),
        ("unknown-1.40.0", None),
    ],
)
def test_parse_ts_version(client_version: str, expected: str | None) -> None:
    assert parse_ts_version(client_version) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.40.0", "stable"),
        ("1.40.3", "stable"),
        ("1.39.0", "unstable"),
        ("1.39.150", "unstable"),
        ("1.76.1", "stable"),
        ("1.77.35-t1234-gabc", "unstable"),
        ("1.78.0-t1234-gabc", "stable"),
        ("1.100.0", "stable"),
        ("1.101.0", "unstable"),
        ("1.40", "stable"),
        ("garbage", None),
        ("", None),
    ],
)
def test_release_track(version: str, expected: str | None) -> None:
    assert release_track(version) == expected
