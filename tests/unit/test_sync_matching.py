"""Matching beyond serial numbers (MAC addresses) and agent freshness (max_agent_age): pure planning, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.core.macaddr import is_matchable, matchable_macs, normalize_mac
from app.tailnet.builtin_sync import SyncDevice
from app.tailnet.models import AttributeWrite, Device
from app.tailnet.posture_identity import hardware_addresses
from app.vendors.base import Agent, KnownAttribute, VendorSpec
from app.vendors.mapping import NamespaceMode
from app.vendors.plan import SyncPlan, device_macs, is_stale, owned_keys, plan_sync, stale_key

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SPEC = VendorSpec(
    id="falcon",
    label="CrowdStrike Falcon",
    namespace="falcon",
    fields=(),
    attributes=(KnownAttribute("falcon:ztaScore", "number"),),
    build=lambda values: None,  # type: ignore[arg-type,return-value]
)
MAC_A = "3c:22:fb:12:34:56"  # globally administered (an Apple OUI)
MAC_B = "7c:a7:b0:00:00:01"
DAY = timedelta(days=1)


def agent(
    i: int,
    serial: str | None,
    *macs: str,
    score: int = 80,
    seen: timedelta | None = timedelta(0),
    active: bool = True,
) -> Agent:
    return Agent(
        "falcon",
        f"a{i}",
        f"host{i}",
        serial,
        {"falcon:ztaScore": score},
        last_seen=None if seen is None else NOW - seen,
        active=active,
        mac_addresses=tuple(macs),
    )


def tailnet_device(i: int, *serials: str, macs: tuple[str, ...] = (), disabled: bool = False) -> Device:
    """A device as the Tailscale adapter reads it: MACs only in its JSON's ``postureIdentity``."""
    identity: dict[str, Any] = {"disabled": True} if disabled else {"serialNumbers": list(serials)}
    if macs:
        identity["ifaceHardwareAddrs"] = list(macs)
    return Device(
        id=f"d{i}",
        node_id=f"n{i}CNTRL",
        name=f"host{i}",
        hostname=f"host{i}",
        serial_numbers=tuple(serials),
        posture_identity_disabled=disabled,
        raw={"id": f"d{i}", "postureIdentity": identity},
    )


def plan(devices: list[Any], agents: list[Agent], current: dict[str, Any] | None = None, **kw: Any) -> SyncPlan:
    return plan_sync(SPEC, devices, agents, current or {}, NamespaceMode.VENDOR, now=NOW, **kw)


def applied(result: SyncPlan) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for device_id, diff in result.changes.items():
        for key, write in diff.items():
            if write is not None:
                state.setdefault(device_id, {})[key] = write.value
    return state


# -- MAC addresses ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3C-22-FB-12-34-56", "3c22fb123456"),  # Falcon
        ("3c:22:fb:12:34:56", "3c22fb123456"),  # Jamf, Fleet, JumpCloud, SimpleMDM
        ("3C22FB123456", "3c22fb123456"),  # Intune
        (" 3c22.fb12.3456 ", "3c22fb123456"),
        ("3c:22:fb:12:34", None),
        ("3c:22:fb:12:34:5g", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalize_mac(raw: object, expected: str | None) -> None:
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize(
    ("mac", "matchable"),
    [
        ("3c22fb123456", True),
        ("000000000000", False),  # placeholder
        ("ffffffffffff", False),  # broadcast
        ("01005e000001", False),  # multicast (group bit)
        ("0242ac110002", False),  # Docker bridge: locally administered
        ("da0b1c2d3e4f", False),  # a randomised Wi-Fi "private address"
    ],
)
def test_placeholder_group_and_local_macs_never_match(mac: str, matchable: bool) -> None:
    assert is_matchable(mac) is matchable


def test_matchable_macs_dedupes_in_order_and_drops_junk() -> None:
    values = ["3C-22-FB-12-34-56", "00:00:00:00:00:00", "3c22fb123456", "junk", MAC_B]
    assert matchable_macs(values) == ("3c22fb123456", "7ca7b0000001")


def test_device_macs_come_from_posture_identity_unless_disabled() -> None:
    assert device_macs(tailnet_device(1, "S", macs=(MAC_A.upper(),))) == ("3c22fb123456",)
    assert device_macs(tailnet_device(1, disabled=True)) == ()
    assert hardware_addresses({"postureIdentity": {"disabled": True, "ifaceHardwareAddrs": [MAC_A]}}) == ()
    assert hardware_addresses({"postureIdentity": {"IfaceHardwareAddrs": [MAC_A]}}) == ("3c22fb123456",)
    assert hardware_addresses({"id": "1"}) == ()
    assert device_macs(SyncDevice("d1", (), False, ("3c22fb123456",))) == ("3c22fb123456",)


def test_a_device_without_a_serial_match_is_matched_by_mac_in_any_spelling() -> None:
    devices = [tailnet_device(1, macs=("3C22FB123456",)), SyncDevice("d2", ("OTHER",), False, ("7ca7b0000001",))]
    agents = [agent(1, "C02ABC", MAC_A.replace(":", "-").upper(), score=91), agent(2, None, MAC_B, score=40)]
    result = plan(devices, agents)
    assert (result.matches, result.matches_by_serial, result.matches_by_mac) == (2, 0, 2)
    assert result.devices_with_identity == 2  # a MAC is an identifier
    assert result.changes == {
        "d1": {"falcon:ztaScore": AttributeWrite(91)},
        "d2": {"falcon:ztaScore": AttributeWrite(40)},
    }


def test_serial_beats_mac() -> None:
    devices = [tailnet_device(1, "SER-1", macs=(MAC_A,))]
    agents = [agent(1, "ser-1", score=10), agent(2, None, MAC_A, score=99)]
    result = plan(devices, agents)
    assert (result.matches_by_serial, result.matches_by_mac) == (1, 0)
    assert result.changes["d1"]["falcon:ztaScore"] == AttributeWrite(10)


def test_a_mac_match_is_refused_when_the_serials_disagree() -> None:
    # a dock's or dongle's MAC seen on another laptop: the serials say these are different machines
    devices = [tailnet_device(1, "SER-1", macs=(MAC_A,))]
    result = plan(devices, [agent(1, "SER-2", MAC_A)])
    assert result.matches == 0 and result.changes == {}


def test_placeholder_macs_match_nothing() -> None:
    devices = [tailnet_device(1, macs=("00:00:00:00:00:00", "02:42:ac:11:00:02"))]
    result = plan(devices, [agent(1, None, "00-00-00-00-00-00", "02-42-AC-11-00-02")])
    assert result.matches == 0 and result.changes == {}
    assert result.devices_without_identity == 1  # no usable identifier at all


def test_duplicate_agents_for_one_mac_resolve_to_the_best_agent() -> None:
    devices = [tailnet_device(1, macs=(MAC_A,))]
    agents = [
        agent(1, None, MAC_A, score=20, seen=timedelta(hours=5)),
        agent(2, None, MAC_A, score=70, seen=timedelta(hours=1)),
        agent(3, None, MAC_A, score=99, seen=timedelta(0), active=False),
    ]
    result = plan(devices, agents)
    assert result.matches_by_mac == 1
    assert result.changes["d1"]["falcon:ztaScore"] == AttributeWrite(70)  # active, then most recently seen


def test_a_mac_two_devices_report_is_ambiguous_and_not_used() -> None:
    devices = [tailnet_device(1, macs=(MAC_A,)), tailnet_device(2, macs=(MAC_A, MAC_B))]
    result = plan(devices, [agent(1, None, MAC_A, score=5), agent(2, None, MAC_B, score=6)])
    assert result.ambiguous_macs == 1
    assert result.changes == {"d2": {"falcon:ztaScore": AttributeWrite(6)}}  # d2 still matches by its own MAC


def test_identity_disabled_devices_do_not_match_by_mac() -> None:
    device = tailnet_device(1, disabled=True)
    device.raw["postureIdentity"]["ifaceHardwareAddrs"] = [MAC_A]
    result = plan([device], [agent(1, None, MAC_A)])
    assert result.matches == 0 and result.devices_without_identity == 1


# -- freshness ----------------------------------------------------------------------------------------


def test_is_stale() -> None:
    assert not is_stale(agent(1, "S", seen=DAY), NOW, DAY)
    assert is_stale(agent(1, "S", seen=DAY + timedelta(seconds=1)), NOW, DAY)
    assert is_stale(agent(1, "S", seen=None), NOW, DAY)  # never seen: nothing says it is healthy
    naive = Agent("falcon", "a", "h", "S", {}, last_seen=(NOW - timedelta(hours=1)).replace(tzinfo=None))
    assert not is_stale(naive, NOW, DAY)


def test_the_stale_marker_is_owned_in_both_modes() -> None:
    assert stale_key(SPEC) == "falcon:stale"
    assert "falcon:stale" in owned_keys(SPEC, NamespaceMode.VENDOR)
    assert "custom:falcon_stale" in owned_keys(SPEC, NamespaceMode.CUSTOM)


def test_without_max_agent_age_old_agents_still_write() -> None:
    result = plan([tailnet_device(1, "S")], [agent(1, "S", seen=timedelta(days=400))])
    assert result.changes == {"d1": {"falcon:ztaScore": AttributeWrite(80)}}
    assert result.agents_stale == 0


def test_a_stale_agent_writes_only_the_marker_and_its_attributes_go() -> None:
    devices = [tailnet_device(1, "S1"), tailnet_device(2, "S2"), tailnet_device(3, "S3")]
    agents = [agent(1, "S1", seen=timedelta(days=8)), agent(2, "S2", seen=timedelta(days=2)), agent(3, "S3", seen=None)]
    current = {"d1": {"falcon:ztaScore": 80}, "d2": {"falcon:ztaScore": 80}}
    result = plan(devices, agents, current, max_agent_age=timedelta(days=7))
    assert result.changes == {
        "d1": {"falcon:stale": AttributeWrite(True), "falcon:ztaScore": None},
        "d3": {"falcon:stale": AttributeWrite(True)},
    }
    assert (result.matches, result.agents_stale, result.stale_matches) == (3, 2, 2)
    assert (result.sets, result.deletes) == (2, 1)

    # the next sync with the same agents changes nothing
    state = {"d1": {"falcon:stale": True}, "d2": {"falcon:ztaScore": 80}, "d3": {"falcon:stale": True}}
    again = plan(devices, agents, state, max_agent_age=timedelta(days=7))
    assert again.changes == {}

    # the agent checks in again: the marker goes, the posture comes back
    agents[0] = agent(1, "S1", seen=timedelta(minutes=3), score=85)
    back = plan(devices, agents, state, max_agent_age=timedelta(days=7))
    assert back.changes["d1"] == {"falcon:stale": None, "falcon:ztaScore": AttributeWrite(85)}


def test_a_marker_left_by_a_previous_setting_goes_when_freshness_is_turned_off() -> None:
    result = plan([tailnet_device(1, "S")], [agent(1, "S", seen=timedelta(days=30))], {"d1": {"falcon:stale": True}})
    assert result.changes == {"d1": {"falcon:stale": None, "falcon:ztaScore": AttributeWrite(80)}}


def test_the_stale_marker_on_a_real_tailnet_is_a_custom_boolean() -> None:
    result = plan_sync(
        SPEC,
        [tailnet_device(1, "S")],
        [agent(1, "S", seen=timedelta(days=3))],
        {"d1": {"custom:falcon_ztaScore": 80}},
        NamespaceMode.CUSTOM,
        now=NOW,
        max_agent_age=DAY,
    )
    assert result.changes == {"d1": {"custom:falcon_stale": AttributeWrite(True), "custom:falcon_ztaScore": None}}


def test_freshness_judges_the_agent_that_won_a_duplicate() -> None:
    agents = [agent(1, "S", seen=timedelta(days=30), score=1), agent(2, "S", seen=timedelta(hours=2), score=2)]
    result = plan([tailnet_device(1, "S")], agents, max_agent_age=DAY)
    assert result.changes == {"d1": {"falcon:ztaScore": AttributeWrite(2)}}
    assert (result.agents_stale, result.stale_matches) == (1, 0)
