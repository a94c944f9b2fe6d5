"""The README's table of vendor attributes lists every attribute every registered vendor writes, with its
``custom:`` form on a real tailnet (a new vendor or attribute without a README row fails here)."""

from __future__ import annotations

from pathlib import Path

from app.vendors.mapping import custom_key
from app.vendors.registry import VENDORS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_vendor_attribute_has_a_row_with_its_custom_key() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| ")]
    for spec in VENDORS:
        for attribute in spec.attributes:
            row = next((r for r in rows if f"`{attribute.key}`" in r), None)
            assert row is not None, f"README lacks a row for {attribute.key}"
            assert f"`{custom_key(attribute.key)}`" in row and spec.label in row
