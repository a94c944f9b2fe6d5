"""Matching agents to devices and diffing attributes: pure planning, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.tailnet.models import AttributeWrite, Device
from app.vendors.base import Agent, KnownAttribute, VendorSpec
from app.vendors.mapping import NamespaceMode, custom_key, custom_value, map_attributes
from app.vendors.plan import best_agent, normalize_serial, plan_sync

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SPEC = VendorSpec(
    id="huntress",
    label="Huntress",
    namespace="huntress",
    fields=(),
    attributes=(
        KnownAttribute("huntress:defenderStatus", "string"),
        KnownAttribute("huntress:defenderPolicyStatus", "string"),
        KnownAttribute("huntress:firewallStatus", "string"),
    ),
    build=lambda values: None,  # type: ignore[arg-type,return-value]
)


def device(i: int, *serials: str, disabled: bool = False) -> Device:
    return Device(
        id=f"d{i}",
        node_id=f"n{i}CNTRL",
        name=f"host{i}",
        hostname=f"host{i}",
        serial_numbers=tuple(serials),
        posture_identity_disabled=disabled,
    )


def agent(
    i: int, serial: str | None, *, seen: int = 0, active: bool = True, decommissioned: bool = False, **attrs: Any
) -> Agent:
    values = {"huntress:firewallStatus": "Enabled", "huntress:defenderPolicyStatus": "Non Compliant"}
    values.update({f"huntress:{k}": v for k, v in attrs.items()})
    return Agent("huntress", f"a{i}", f"host{i}", serial, values, T0 + timedelta(minutes=seen), active, decommissioned)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  C02ABC ", "c02abc"),
        ("c02abc", "c02abc"),
        ("To Be Filled By O.E.M.", None),
        ("to be filled by o.e.m.", None),
        ("System Serial Number", None),
        ("Default string", None),
        ("Not Specified", None),
        ("0", None),
        ("None", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_serial(raw: str | None, expected: str | None) -> None:
    assert normalize_serial(raw) == expected


def test_best_agent_prefers_active_then_not_decommissioned_then_recent() -> None:
    old_active = agent(1, "S", seen=1)
    new_inactive = agent(2, "S", seen=9, active=False)
    new_decom = agent(3, "S", seen=10, decommissioned=True)
    newer_active = agent(4, "S", seen=5)
    assert best_agent([old_active, new_inactive, new_decom]) is old_active
    assert best_agent([old_active, newer_active, new_decom]) is newer_active
    assert best_agent([new_inactive, new_decom]) is new_inactive


def test_plan_matches_any_serial_case_and_whitespace_insensitively() -> None:
    devices = [
        device(1, "BASEBOARD-1", " c02abc "),  # second serial matches
        device(2, "To Be Filled By O.E.M."),  # placeholder only: no identity
        device(3),  # no serials
        device(4, "XYZ", disabled=True),  # identity disabled
        device(5, "NOMATCH"),
    ]
    agents = [agent(1, "C02ABC"), agent(2, None), agent(3, "xyz"), agent(4, "OTHER")]
    plan = plan_sync(SPEC, devices, agents, {}, NamespaceMode.VENDOR)
    assert (plan.matches, plan.devices_with_identity, plan.devices_without_identity) == (1, 2, 3)
    assert (plan.agents, plan.agents_without_serial) == (4, 1)
    assert plan.changes == {
        "d1": {
            "huntress:defenderPolicyStatus": AttributeWrite("Non Compliant"),
            "huntress:firewallStatus": AttributeWrite("Enabled"),
        }
    }


def test_duplicate_serials_resolved_to_the_best_agent() -> None:
    agents = [
        agent(1, "S1", seen=1, firewallStatus="Disabled"),
        agent(2, "s1 ", seen=5, firewallStatus="Isolated"),
        agent(3, "S1", seen=9, decommissioned=True, firewallStatus="Pending Release"),
    ]
    plan = plan_sync(SPEC, [device(1, "S1")], agents, {}, NamespaceMode.VENDOR)
    assert plan.duplicate_serials_resolved == 2
    assert plan.changes["d1"]["huntress:firewallStatus"] == AttributeWrite("Isolated")


def test_diff_writes_only_changes_and_deletes_what_no_longer_matches() -> None:
    devices = [device(1, "S1"), device(2, "S2"), device(3, "S3")]
    current = {
        "d1": {"huntress:firewallStatus": "Enabled", "huntress:defenderPolicyStatus": "Compliant"},
        "d2": {"huntress:firewallStatus": "Enabled", "custom:unrelated": True},
        "d3": {"huntress:firewallStatus": "Enabled", "huntress:defenderPolicyStatus": "Non Compliant"},
    }
    agents = [agent(1, "S1"), agent(3, "S3")]
    plan = plan_sync(SPEC, devices, agents, current, NamespaceMode.VENDOR)
    assert plan.changes == {
        "d1": {"huntress:defenderPolicyStatus": AttributeWrite("Non Compliant")},
        "d2": {"huntress:firewallStatus": None},  # no agent any more: the vendor's attribute goes, others stay
    }
    assert (plan.sets, plan.deletes) == (1, 1)


def test_plan_is_idempotent() -> None:
    devices = [device(i, f"S{i}") for i in range(20)]
    agents = [agent(i, f"S{i}", activeThreats=i) for i in range(0, 20, 2)]
    first = plan_sync(SPEC, devices, agents, {}, NamespaceMode.VENDOR)
    applied = {d: {k: w.value for k, w in c.items() if w is not None} for d, c in first.changes.items()}
    second = plan_sync(SPEC, devices, agents, applied, NamespaceMode.VENDOR)
    assert first.changes and second.changes == {}


def test_types_are_compared_strictly() -> None:
    spec = VendorSpec(
        "s1", "S1", "sentinelOne", (), (KnownAttribute("sentinelOne:infected", "boolean"),), build=lambda v: None
    )  # type: ignore[arg-type,return-value]
    a = Agent("s1", "a", "h", "S", {"sentinelOne:infected": True})
    plan = plan_sync(spec, [device(1, "S")], [a], {"d1": {"sentinelOne:infected": 1}}, NamespaceMode.VENDOR)
    assert plan.changes == {"d1": {"sentinelOne:infected": AttributeWrite(True)}}


def test_unknown_vendor_keys_are_not_written() -> None:
    a = Agent("huntress", "a", "h", "S", {"huntress:firewallStatus": "Enabled", "huntress:madeUp": "x"})
    plan = plan_sync(SPEC, [device(1, "S")], [a], {}, NamespaceMode.VENDOR)
    assert set(plan.changes["d1"]) == {"huntress:firewallStatus"}


def test_custom_namespace_mode() -> None:
    assert custom_key("huntress:defenderPolicyStatus") == "custom:huntress_defenderPolicyStatus"
    assert custom_key("sentinelOne:activeThreats") == "custom:sentinelOne_activeThreats"
    assert custom_value("Non Compliant") == "Non_Compliant"
    assert custom_value("Gpo Conflict!") == "Gpo_Conflict"
    assert custom_value("22.3.2.23") == "22.3.2.23"
    assert custom_value("x" * 80) == "x" * 50
    assert custom_value("!!!") is None
    assert custom_value(3) == 3 and custom_value(True) is True
    assert map_attributes(
        {"sentinelOne:infected": False, "sentinelOne:operationalState": "na"}, NamespaceMode.CUSTOM
    ) == {"custom:sentinelOne_infected": False, "custom:sentinelOne_operationalState": "na"}
    plan = plan_sync(SPEC, [device(1, "S")], [agent(1, "S")], {}, NamespaceMode.CUSTOM)
    assert plan.changes == {
        "d1": {
            "custom:huntress_defenderPolicyStatus": AttributeWrite("Non_Compliant"),
            "custom:huntress_firewallStatus": AttributeWrite("Enabled"),
        }
    }


def test_a_value_of_another_type_is_a_change_though_equal() -> None:
    """``True == 1``: the unchanged check must compare types too, or a number stored where the vendor now says
    ``true`` would stay a number."""
    current = {"d1": {"huntress:firewallStatus": 1, "huntress:defenderPolicyStatus": "Non Compliant"}}
    plan = plan_sync(SPEC, [device(1, "S1")], [agent(1, "S1", firewallStatus=True)], current, NamespaceMode.VENDOR)
    assert plan.changes == {"d1": {"huntress:firewallStatus": AttributeWrite(True)}}
    current["d1"]["huntress:firewallStatus"] = True
    again = plan_sync(SPEC, [device(1, "S1")], [agent(1, "S1", firewallStatus=True)], current, NamespaceMode.VENDOR)
    assert again.changes == {}


def test_stored_keys_the_sync_does_not_own_are_left_alone() -> None:
    current = {"d1": {"huntress:firewallStatus": "Enabled", "huntress:defenderPolicyStatus": "Non Compliant"}}
    current["d1"]["custom:other"] = "x"
    plan = plan_sync(SPEC, [device(1, "S1")], [agent(1, "S1")], current, NamespaceMode.VENDOR)
    assert plan.changes == {}
    current["d1"]["huntress:firewallStatus"] = "Disabled"
    plan = plan_sync(SPEC, [device(1, "S1")], [agent(1, "S1")], current, NamespaceMode.VENDOR)
    assert plan.changes == {"d1": {"huntress:firewallStatus": AttributeWrite("Enabled")}}


def test_equal_values_share_one_write_and_types_stay_apart() -> None:
    """The whole plan is held while it is written: one (immutable) write per distinct value, not per attribute."""
    spec = VendorSpec(
        "s1",
        "S1",
        "sentinelOne",
        (),
        (KnownAttribute("sentinelOne:infected", "boolean"), KnownAttribute("sentinelOne:threats", "number")),
        build=lambda v: None,  # type: ignore[arg-type,return-value]
    )
    agents = [
        Agent("s1", "a1", "h1", "S1", {"sentinelOne:infected": True, "sentinelOne:threats": 1}),
        Agent("s1", "a2", "h2", "S2", {"sentinelOne:infected": True, "sentinelOne:threats": 1}),
    ]
    plan = plan_sync(spec, [device(1, "S1"), device(2, "S2")], agents, {}, NamespaceMode.VENDOR)
    one, two = plan.changes["d1"], plan.changes["d2"]
    assert one == two == {"sentinelOne:infected": AttributeWrite(True), "sentinelOne:threats": AttributeWrite(1)}
    assert one["sentinelOne:infected"] is two["sentinelOne:infected"]
    assert one["sentinelOne:threats"] is two["sentinelOne:threats"]
    threats = one["sentinelOne:threats"]
    assert threats is not None and type(threats.value) is int  # True == 1, but 1 got its own write
