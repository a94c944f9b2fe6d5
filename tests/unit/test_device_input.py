"""The device field checks of ``devices add``/``import``: what passes, and the one line for what does not."""

from __future__ import annotations

from typing import Any

import pytest

from app.tailnet.device_input import (
    check_address,
    check_import_item,
    check_os,
    check_tags,
    check_user,
    duplicate_names,
)
from app.tailnet.errors import InvalidRequest


@pytest.mark.parametrize("user", ["alice@example.com", "creator@github", " bob@example.org "])
def test_users_that_pass(user: str) -> None:
    assert check_user(user) == user.strip()


@pytest.mark.parametrize(
    ("user", "fragment"), [(None, "null"), ("x", "not an email"), ("a b@c", "not an email"), (3, "3")]
)
def test_users_refused(user: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        check_user(user)


@pytest.mark.parametrize(
    ("address", "normalised"),
    [("100.64.0.1", "100.64.0.1"), ("100.127.255.255", "100.127.255.255"), ("FD7A:115C:A1E0::1", "fd7a:115c:a1e0::1")],
)
def test_tailscale_addresses_pass(address: str, normalised: str) -> None:
    assert check_address(address) == normalised


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("999.1.1.1", "not an IPv4 or IPv6"),
        ("not-an-ip", "not an IPv4 or IPv6"),
        ("100.128.0.1", "not a Tailscale address"),
        ("192.168.1.1", "not a Tailscale address"),
        ("fd7a:115c:a1e1::1", "not a Tailscale address"),
        (None, "not an IPv4 or IPv6"),
    ],
)
def test_addresses_refused(address: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        check_address(address)


def test_tags() -> None:
    assert check_tags(["tag:prod", "tag:web-1"]) == ("tag:prod", "tag:web-1")
    assert check_tags("tag:x") == ("tag:x",)  # one tag, never its characters
    assert check_tags(None) == ()
    for bad in (["prod"], ["tag:"], ["tag:1abc"], ["tag:a b"], [3], {"tag": "x"}):
        with pytest.raises(InvalidRequest):
            check_tags(bad)


def test_os() -> None:
    assert [check_os(o) for o in ("macOS", "linux", "iOS", "Windows", "", None, "  ")] == [
        "macOS",
        "linux",
        "iOS",
        "Windows",
        "",
        "",
        "",
    ]
    with pytest.raises(InvalidRequest, match="use one of linux, windows, macos, ios, android"):
        check_os("beos")


def test_import_item_user_absent_is_allowed_null_is_not() -> None:
    check_import_item({"id": "1", "nodeId": "n"})
    with pytest.raises(InvalidRequest, match="user is null"):
        check_import_item({"id": "1", "nodeId": "n", "user": None})


def test_duplicate_names_fold_case_and_ignore_one_device_listed_twice() -> None:
    pairs = [("1", "a.ts.net"), ("2", "A.ts.net"), ("3", "b.ts.net"), ("3", "b.ts.net")]
    assert duplicate_names(pairs) == ["a.ts.net"]
