"""Matching agents to devices and diffing attributes: the pure planning of a sync, no I/O.

``plan_sync`` decides what one sync writes; ``app.vendors.sync`` fetches its inputs and applies the plan.

**Matching.** Serial numbers first (trimmed, case-folded, firmware placeholders ignored). A device that no
agent matches by serial is then matched by MAC address, where the vendor reports MACs (``Agent.mac_addresses``)
and the device has them (``app.tailnet.posture_identity``). MACs are compared as 12 lowercase hex digits;
placeholders, group and locally administered (randomised, virtual) MACs never match (``app.core.macaddr``). A MAC
that two tailnet devices report is ambiguous (a shared dock or dongle) and is not used; a MAC match is refused when
the agent's serial number and the device's both exist and differ. Several agents for one serial or one MAC
(reinstalls) resolve to ``best_agent``.

**Freshness.** With a ``max_agent_age``, an agent whose ``last_seen`` is older (or unknown) is stale: its
device gets none of the vendor's attributes (a rule comparing them fails as for a device without the agent) and
one marker, ``<namespace>:stale = true`` (``custom:<namespace>_stale`` on a real tailnet), so an admin sees why.
The marker is removed when the agent checks in again; it is never written as ``false``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from app.core.macaddr import matchable_macs
from app.tailnet.models import AttributeChanges, AttributeValue, AttributeWrite
from app.tailnet.posture_identity import hardware_addresses
from app.vendors.base import Agent, VendorSpec
from app.vendors.mapping import NamespaceMode, map_attributes, map_key

PLACEHOLDER_SERIALS = frozenset(
    s.casefold()
    for s in ("To Be Filled By O.E.M.", "System Serial Number", "Default string", "Not Specified", "0", "None", "")
)


def normalize_serial(serial: str | None) -> str | None:
    """Trimmed and case-folded; ``None`` for missing and firmware placeholder serials."""
    if serial is None:
        return None
    folded = serial.strip().casefold()
    return None if folded in PLACEHOLDER_SERIALS else folded


def best_agent(agents: Iterable[Agent]) -> Agent:
    """Of several agents for one serial (reinstalls): active, not decommissioned, most recently seen."""

    def rank(agent: Agent) -> tuple[bool, bool, float]:
        seen = agent.last_seen.timestamp() if agent.last_seen is not None else float("-inf")
        return (agent.active and not agent.decommissioned, not agent.decommissioned, seen)

    return max(agents, key=rank)


class MatchableDevice(Protocol):
    """What matching needs of a device: a ``Device``, or the built-in store's narrow ``SyncDevice``."""

    @property
    def id(self) -> str: ...

    @property
    def serial_numbers(self) -> Sequence[str]: ...

    @property
    def posture_identity_disabled(self) -> bool: ...


STALE_NAME = "stale"
"""The marker written instead of a stale agent's attributes: ``<namespace>:stale = true``."""


def stale_key(spec: VendorSpec) -> str:
    """``huntress:stale``: the freshness marker of ``spec`` (before mapping to ``custom:``)."""
    return f"{spec.namespace}:{STALE_NAME}"


def device_macs(device: MatchableDevice) -> tuple[str, ...]:
    """A device's matchable MACs: the built-in store's ``SyncDevice`` carries them, a ``Device`` has its JSON."""
    if device.posture_identity_disabled:
        return ()
    macs = getattr(device, "mac_addresses", None)
    if macs is not None:
        return tuple(macs)
    raw = getattr(device, "raw", None)
    return hardware_addresses(raw) if isinstance(raw, Mapping) else ()


def is_stale(agent: Agent, now: datetime, max_agent_age: timedelta) -> bool:
    """Whether ``agent`` has not checked in within ``max_agent_age`` of ``now`` (an unknown ``last_seen`` is)."""
    seen = agent.last_seen
    if seen is None:
        return True
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return now - seen > max_agent_age


@dataclass(frozen=True, slots=True)
class OwnedKeys:
    """The keys one integration owns in one mode: its catalogue's ``keys`` and every key starting with one of
    ``prefixes`` (its attribute families, e.g. ``fleetPolicy:``); ``key in owned`` tests both."""

    keys: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def __contains__(self, key: object) -> bool:
        return key in self.keys or (bool(self.prefixes) and isinstance(key, str) and key.startswith(self.prefixes))


def owned_keys(spec: VendorSpec, mode: NamespaceMode) -> OwnedKeys:
    """What a sync of ``spec`` in ``mode`` owns: what it writes, and what it deletes once no longer wanted."""
    return OwnedKeys(
        frozenset(map_key(a.key, mode) for a in spec.attributes) | {map_key(stale_key(spec), mode)},
        tuple(map_key(f.prefix, mode) for f in spec.families),
    )


@runtime_checkable
class HeldValues(Protocol):
    """Current values that can tell whether a device holds exactly some values without decoding its own (the
    built-in store's ``StoredValues``)."""

    def holds(self, device_id: str, wanted: Mapping[str, AttributeValue]) -> bool: ...


def _write(writes: dict[tuple[type, AttributeValue], AttributeWrite], value: AttributeValue) -> AttributeWrite:
    """One shared (immutable) ``AttributeWrite`` per distinct value: a first sync sets 260k-350k attributes that
    hold a few hundred values, and the plan is held whole while its batches are written (peak memory)."""
    try:
        write = writes.get((value.__class__, value))
        if write is None:
            write = writes[(value.__class__, value)] = AttributeWrite(value)
        return write
    except TypeError:  # unhashable: never an attribute value, and the rules say so when it is written
        return AttributeWrite(value)


def _same(a: AttributeValue | None, b: AttributeValue | None) -> bool:
    return type(a) is type(b) and a == b


def _same_types(have: Mapping[str, AttributeValue], wanted: Mapping[str, AttributeValue]) -> bool:
    """Of two equal dicts, whether every value also has the same type (``True == 1``, but they differ)."""
    return all(value.__class__ is have[key].__class__ for key, value in wanted.items())


def _all_owned(attributes: Mapping[str, AttributeValue], owned: OwnedKeys, seen: dict[frozenset[str], bool]) -> bool:
    """Whether the sync owns every key of ``attributes``, remembered per key set (agents share a handful)."""
    keys = frozenset(attributes)
    known = seen.get(keys)
    if known is None:
        known = seen[keys] = all(key in owned for key in keys)
    return known


@dataclass
class SyncPlan:
    """What a sync will change, and the counts an admin needs to trust it."""

    changes: AttributeChanges = field(default_factory=dict)
    agents: int = 0
    agents_without_serial: int = 0
    duplicate_serials_resolved: int = 0
    devices: int = 0
    devices_with_identity: int = 0
    devices_without_identity: int = 0
    matches: int = 0
    matches_by_serial: int = 0
    matches_by_mac: int = 0
    ambiguous_macs: int = 0
    agents_stale: int = 0
    stale_matches: int = 0
    sets: int = 0
    deletes: int = 0


def _chosen(groups: Mapping[str, list[Agent]]) -> dict[str, Agent]:
    return {ident: group[0] if len(group) == 1 else best_agent(group) for ident, group in groups.items()}


def _mac_match(serials: list[str], macs: Iterable[str], by_mac: Mapping[str, Agent], shared: set[str]) -> Agent | None:
    """The agent a device matches by MAC: not a MAC other devices report too, nor an agent whose serial is
    another one than the device's."""
    found: dict[str, Agent] = {}
    for mac in macs:
        agent = by_mac.get(mac)
        if agent is None or mac in shared:
            continue
        serial = normalize_serial(agent.serial)
        if serials and serial is not None and serial not in serials:
            continue
        found[agent.id] = agent
    if not found:
        return None
    return next(iter(found.values())) if len(found) == 1 else best_agent(found.values())


def plan_sync(
    spec: VendorSpec,
    devices: Sequence[MatchableDevice],
    agents: list[Agent],
    current: Mapping[str, Mapping[str, AttributeValue]],
    mode: NamespaceMode,
    *,
    now: datetime | None = None,
    max_agent_age: timedelta | None = None,
) -> SyncPlan:
    """Match agents to devices and diff the wanted attributes with ``current`` (device id → key → value).

    ``max_agent_age`` (with ``now``): agents not seen within it write only the stale marker (module docstring).
    """
    plan = SyncPlan(agents=len(agents), devices=len(devices))
    owned = owned_keys(spec, mode)
    owned_sets: dict[frozenset[str], bool] = {}
    marker = map_key(stale_key(spec), mode)
    moment = now or datetime.now(UTC)
    holds = current.holds if isinstance(current, HeldValues) else None
    writes: dict[tuple[type, AttributeValue], AttributeWrite] = {}

    def stale(agent: Agent) -> bool:
        return max_agent_age is not None and is_stale(agent, moment, max_agent_age)

    by_serial: dict[str, list[Agent]] = {}
    by_mac_groups: dict[str, list[Agent]] = {}
    for agent in agents:
        if stale(agent):
            plan.agents_stale += 1
        for mac in matchable_macs(agent.mac_addresses):
            by_mac_groups.setdefault(mac, []).append(agent)
        serial = normalize_serial(agent.serial)
        if serial is None:
            plan.agents_without_serial += 1
            continue
        by_serial.setdefault(serial, []).append(agent)
    chosen = _chosen(by_serial)
    plan.duplicate_serials_resolved = sum(len(group) - 1 for group in by_serial.values())
    by_mac = _chosen(by_mac_groups)
    device_mac_lists = [device_macs(device) for device in devices] if by_mac else [() for _ in devices]
    shared = {mac for mac, count in Counter(m for macs in device_mac_lists for m in macs).items() if count > 1}
    plan.ambiguous_macs = len(shared & by_mac.keys())
    for device, macs in zip(devices, device_mac_lists, strict=True):
        serials = [] if device.posture_identity_disabled else [normalize_serial(s) for s in device.serial_numbers]
        serials = [s for s in serials if s]
        if not serials and not by_mac:
            macs = device_macs(device)  # an identifier even when no agent reports MACs (not read otherwise)
        wanted: dict[str, AttributeValue] = {}
        agent: Agent | None = None
        if serials or macs:
            plan.devices_with_identity += 1
            candidates = [chosen[s] for s in serials if s in chosen]
            if candidates:
                agent = candidates[0] if len(candidates) == 1 else best_agent(candidates)
                plan.matches_by_serial += 1
            elif macs and by_mac:
                agent = _mac_match(serials, macs, by_mac, shared)
                if agent is not None:
                    plan.matches_by_mac += 1
        else:
            plan.devices_without_identity += 1
        if agent is not None:
            plan.matches += 1
            if stale(agent):
                plan.stale_matches += 1
                wanted = {marker: True}
            else:
                wanted = map_attributes(agent.attributes, mode)
                if marker in wanted or not _all_owned(wanted, owned, owned_sets):
                    wanted = {k: v for k, v in wanted.items() if k in owned and k != marker}
        if holds is not None and holds(device.id, wanted):
            continue  # unchanged, told without decoding what the device holds (the built-in store)
        stored = current.get(device.id)
        if stored is not None and stored == wanted and _same_types(stored, wanted):
            continue  # unchanged, the common case of a re-sync (every stored key is one this sync wanted)
        have = {k: v for k, v in (stored or {}).items() if k in owned}
        if len(have) == len(wanted) and all(k in have and _same(have[k], v) for k, v in wanted.items()):
            continue  # unchanged once keys this sync does not own are left aside
        diff: dict[str, AttributeWrite | None] = {}
        for key, value in sorted(wanted.items()):
            if key not in have or not _same(have[key], value):
                diff[key] = _write(writes, value)
                plan.sets += 1
        for key in sorted(set(have) - set(wanted)):
            diff[key] = None
            plan.deletes += 1
        if diff:
            plan.changes[device.id] = diff
    return plan
