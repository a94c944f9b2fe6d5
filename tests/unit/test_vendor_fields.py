"""The shared readers of vendor JSON fields and reported MACs (``app.vendors._fields``)."""

from __future__ import annotations

import pytest

from app.vendors._fields import checked_mac, checked_macs, optional_bool, optional_str, reported_macs
from app.vendors.base import VendorDataError


def test_optional_str_accepts_text_and_null_and_names_a_wrong_field() -> None:
    assert optional_str({"name": "mac-1"}, "name", "X device 1") == "mac-1"
    assert optional_str({"name": None}, "name", "X device 1") is None
    assert optional_str({}, "name", "X device 1") is None
    with pytest.raises(VendorDataError, match=r"^X device 1: name is a int, not a string$"):
        optional_str({"name": 7}, "name", "X device 1")


@pytest.mark.parametrize("value", [0, 1, "true", "false", [], {}])
def test_optional_bool_refuses_anything_but_true_false_or_null(value: object) -> None:
    assert optional_bool({"on": True}, "on", "w") is True and optional_bool({"on": None}, "on", "w") is None
    with pytest.raises(VendorDataError, match=r"^w: on is .*, not true or false$"):
        optional_bool({"on": value}, "on", "w")


def test_reported_macs_are_distinct_normalised_and_without_placeholders() -> None:
    given = ["A4-83-E7-11-22-33", "a4:83:e7:11:22:33", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "nope", None, 7]
    assert reported_macs(given) == ("a483e7112233",)


def test_checked_mac_refuses_a_mac_that_is_not_a_string_but_drops_a_malformed_one() -> None:
    assert checked_mac(None, "w") is None and checked_mac("", "w") is None and checked_mac("zz", "w") is None
    assert checked_macs(["F0:DB:E2:DF:E9:2F", "f0dbe2dfe92f", "000000000000"], "w") == ("f0dbe2dfe92f",)
    with pytest.raises(VendorDataError, match=r"^w: a MAC address is a int, not a string$"):
        checked_macs(["f0dbe2dfe92f", 12], "w")
