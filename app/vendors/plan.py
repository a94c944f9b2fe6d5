"""Matching agents to devices by serial number and diffing attributes: the pure planning of a sync, no I/O.

``plan_sync`` decides what one sync writes; ``app.vendors.sync`` fetches its inputs and applies the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.tailnet.models import AttributeChanges, AttributeValue, AttributeWrite
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
        frozenset(map_key(a.key, mode) for a in spec.attributes),
        tuple(map_key(f.prefix, mode) for f in spec.families),
    )


def _same(a: AttributeValue | None, b: AttributeValue | None) -> bool:
    return type(a) is type(b) and a == b


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
    sets: int = 0
    deletes: int = 0


def plan_sync(
    spec: VendorSpec,
    devices: Sequence[MatchableDevice],
    agents: list[Agent],
    current: Mapping[str, Mapping[str, AttributeValue]],
    mode: NamespaceMode,
) -> SyncPlan:
    """Match agents to devices and diff the wanted attributes with ``current`` (device id → key → value)."""
    plan = SyncPlan(agents=len(agents), devices=len(devices))
    owned = owned_keys(spec, mode)
    by_serial: dict[str, list[Agent]] = {}
    for agent in agents:
        serial = normalize_serial(agent.serial)
        if serial is None:
            plan.agents_without_serial += 1
            continue
        by_serial.setdefault(serial, []).append(agent)
    chosen: dict[str, Agent] = {}
    for serial, group in by_serial.items():
        chosen[serial] = group[0] if len(group) == 1 else best_agent(group)
        plan.duplicate_serials_resolved += len(group) - 1
    existing_ids = set()
    for device in devices:
        existing_ids.add(device.id)
        serials = [] if device.posture_identity_disabled else [normalize_serial(s) for s in device.serial_numbers]
        serials = [s for s in serials if s]
        wanted: dict[str, AttributeValue] = {}
        if serials:
            plan.devices_with_identity += 1
            candidates = [chosen[s] for s in serials if s in chosen]
            if candidates:
                plan.matches += 1
                agent = candidates[0] if len(candidates) == 1 else best_agent(candidates)
                wanted = {k: v for k, v in map_attributes(agent.attributes, mode).items() if k in owned}
        else:
            plan.devices_without_identity += 1
        have = {k: v for k, v in current.get(device.id, {}).items() if k in owned}
        if len(have) == len(wanted) and all(k in have and _same(have[k], v) for k, v in wanted.items()):
            continue  # unchanged: the common case of a re-sync
        diff: dict[str, AttributeWrite | None] = {}
        for key, value in sorted(wanted.items()):
            if key not in have or not _same(have[key], value):
                diff[key] = AttributeWrite(value)
                plan.sets += 1
        for key in sorted(set(have) - set(wanted)):
            diff[key] = None
            plan.deletes += 1
        if diff:
            plan.changes[device.id] = diff
    return plan
