"""The explicit vendor registry, and the attribute catalogue and lint hints each vendor declares."""

from __future__ import annotations

import dataclasses

import pytest

from app.posture.known import BUILTIN_ATTRIBUTES, known_attribute, value_hint
from app.vendors import huntress, sentinelone
from app.vendors.base import KnownAttribute, VendorSpec
from app.vendors.registry import REGISTRY, VENDORS, VendorRegistry, vendor, vendors


def spec(vendor_id: str) -> VendorSpec:
    return dataclasses.replace(huntress.SPEC, id=vendor_id, label=vendor_id.title())


ALL_IDS = [
    "crowdstrike",
    "fleet",
    "huntress",
    "intune",
    "jamfpro",
    "jumpcloud",
    "kandji",
    "kolide",
    "sentinelone",
    "simplemdm",
]


def test_vendors_are_listed_explicitly() -> None:
    assert VENDORS[:2] == (huntress.SPEC, sentinelone.SPEC)
    assert vendors() is REGISTRY
    assert list(REGISTRY) == ALL_IDS
    assert REGISTRY["sentinelone"] is sentinelone.SPEC


def test_every_vendor_has_its_own_namespace_a_label_and_fields() -> None:
    namespaces = [spec.namespace for spec in VENDORS]
    assert len(set(namespaces)) == len(namespaces)
    for spec in VENDORS:
        assert spec.label and spec.fields and spec.attributes, spec.id
        assert all(a.key.split(":", 1)[0] in spec.namespaces for a in spec.attributes), spec.id


def test_lookup_ignores_case_and_spaces_and_names_the_known_ids() -> None:
    assert vendor(" SentinelOne ") is sentinelone.SPEC
    with pytest.raises(KeyError, match="unknown vendor 'acme'; known: crowdstrike, fleet, huntress, "):
        vendor("acme")
    with pytest.raises(KeyError, match="known: none"):
        VendorRegistry(()).vendor("huntress")


def test_a_registry_built_for_a_test_is_ordered_by_id_and_refuses_duplicate_ids() -> None:
    registry = VendorRegistry([spec("zeta"), spec("alpha")])
    assert list(registry) == ["alpha", "zeta"] and len(registry) == 2
    assert registry.get("huntress") is None
    with pytest.raises(ValueError, match="two vendors with the id 'alpha'"):
        VendorRegistry([spec("alpha"), spec("alpha")])


def _every_attribute() -> list[KnownAttribute]:
    return [*BUILTIN_ATTRIBUTES, *(a for s in VENDORS for a in s.attributes)]


@pytest.mark.parametrize("attribute", _every_attribute(), ids=lambda a: a.key)
def test_every_hint_names_an_allowed_value(attribute: KnownAttribute) -> None:
    for wrong, right in attribute.hints.items():
        assert right in attribute.values, (wrong, right)
        assert wrong not in attribute.values


def test_vendor_hints_come_from_the_vendor_spec() -> None:
    declared = {a.key: a for s in VENDORS for a in s.attributes}
    assert declared["huntress:defenderStatus"].hints["healthy"] == "Protected"
    assert declared["sentinelOne:operationalState"].hints["n/a"] == "na"
    assert known_attribute("huntress:defenderStatus") is declared["huntress:defenderStatus"]
    assert value_hint("huntress:defenderStatus", "Healthy") == "Protected"
    assert value_hint("custom:huntress_defenderStatus", "Healthy") == "Protected"
    assert value_hint("node:os", "Darwin") == "macos"
