"""Drift reconcile: find devices holding a profile's attribute with no active grant behind it, and (when asked)
remove it.

The attribute of a profile is accessbot's to grant; a device holding it without a request in ``granting`` or
``granted`` got it some other way (set by hand, an old grant whose record was lost, another tool). A ``failed``
grant wrote nothing, and a ``scheduled`` one writes only at its start, so neither explains an attribute.

One run: read the attributes (in bulk from the built-in store; through the Tailscale API one GET per device,
at most ``max_reads`` per run, paced, continuing where the last run stopped), then the active grants (read
after the tailnet, so a grant written meanwhile is seen), record findings (``app.access.drift``), close those
that no longer hold, remove what the caller or the profile (``remove_unexplained``) asks, and hand the findings
nobody reported yet to ``report`` (the Slack layer DMs the admins), each once across processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select

from app.access import drift
from app.access.drift import DeviceKey, Finding, Held, Resolution
from app.config.model import Config
from app.config.profiles import Profile
from app.core.clock import Clock, utcnow
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, RequestStatus
from app.tailnet import Tailnet
from app.tailnet.errors import DeviceNotFound, NotFound
from app.tailnet.models import Actor, AttributeValue, Device

log = logging.getLogger(__name__)

ACTOR_NAME = "reconcile"
ACTOR_ID = f"system:{ACTOR_NAME}"
DRIFT_REMOVED = "Drift removed"
"""Audit action of an attribute reconcile removed (besides the tailnet's own "Update node attribute")."""
DRIFT_RESTORED = "Drift removal undone"
"""Audit action when a grant started between reconcile's last check and its delete, and the write was put back."""
ACTIVE = (RequestStatus.GRANTING, RequestStatus.GRANTED)
"""Requests whose attribute is (or is being) on the device."""
MAX_READS = 500
"""Devices read one by one per scheduled run (the Tailscale adapter); a larger tailnet is covered over several runs."""
PACE = 0.2
"""Seconds between two per-device reads of a scheduled run (at most 5 a second, 500 in under two minutes), to leave
the API's rate limit to grants; a 429 is waited out by the adapter's retries (``Retry-After``)."""

Report = Callable[[list[Finding]], bool]
"""Tells the admins about findings; False (or an exception) when nobody could be told, so they are retried."""


class Removal(StrEnum):
    """Which findings a run removes."""

    NONE = "none"  # report only (``accessbot reconcile``)
    PROFILES = "profiles"  # those of profiles with ``remove_unexplained: true`` (the scheduled job)
    ALL = "all"  # every one (``accessbot reconcile --fix``)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A device whose attributes could not be read this run."""

    device_id: str
    device_name: str
    error: str


@dataclass(slots=True)
class _Observation:
    """What one run read from the tailnet."""

    held: dict[DeviceKey, AttributeValue] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # every listed device: id -> name
    read: set[str] = field(default_factory=set)  # devices whose attributes were read
    unreadable: list[Unreadable] = field(default_factory=list)


@dataclass(slots=True)
class ReconcileReport:
    """The outcome of one run."""

    devices: int = 0
    read: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    new: int = 0
    resolved: dict[str, int] = field(default_factory=dict)
    removed: list[Finding] = field(default_factory=list)
    not_removed: list[tuple[Finding, str]] = field(default_factory=list)
    reported: int = 0
    findings: list[Finding] = field(default_factory=list)  # open after the run

    @property
    def complete(self) -> bool:
        """Whether every device was read (a per-device run may stop at ``max_reads``)."""
        return self.read == self.devices and not self.unreadable

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``accessbot reconcile --json``)."""
        return {
            "devices": self.devices,
            "read": self.read,
            "complete": self.complete,
            "unreadable": [
                {"device_id": u.device_id, "device": u.device_name, "error": u.error} for u in self.unreadable
            ],
            "new": self.new,
            "resolved": dict(self.resolved),
            "removed": [f.to_json() for f in self.removed],
            "not_removed": [{**f.to_json(), "error": error} for f, error in self.not_removed],
            "findings": [f.to_json() for f in self.findings],
        }


def profiles_by_key(config: Config) -> dict[str, list[Profile]]:
    """The profiles' attribute keys, each with the profiles that grant it (config order)."""
    keys: dict[str, list[Profile]] = {}
    for profile in config.profiles:
        keys.setdefault(profile.attribute, []).append(profile)
    return keys


class Reconciler:
    """Finds, records, removes and reports drift. Safe to run in several processes at once."""

    def __init__(
        self,
        db: Database,
        tailnet: Tailnet,
        config: Callable[[], Config],
        *,
        clock: Clock = utcnow,
        max_reads: int | None = None,
        pace: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``max_reads`` bounds per-device reads per run (``None``: all); ``pace`` seconds pass between two."""
        self.db = db
        self.tailnet = tailnet
        self.config = config
        self.clock = clock
        self.max_reads = max_reads
        self.pace = pace
        self.sleep = sleep
        self._cursor: str | None = None  # the last device read by the previous (partial) run

    def run(self, *, removal: Removal = Removal.NONE, report: Report | None = None) -> ReconcileReport:
        """One reconcile: read, record, close, remove, report."""
        keys = profiles_by_key(self.config())
        seen = self._observe(set(keys))
        active = self.active(set(keys))
        now = self.clock()
        unexplained = {dk: value for dk, value in seen.held.items() if dk not in active}
        # by device name, then key: findings seen at once are recorded, and so reported, in an order people read
        # (not the order the tailnet happened to list values in)
        held = sorted(
            (Held(d, seen.names.get(d, ""), k, v, keys[k][0].id) for (d, k), v in unexplained.items()),
            key=lambda h: (h.device_name, h.device_id, h.attribute),
        )
        result = ReconcileReport(devices=len(seen.names), read=len(seen.read), unreadable=seen.unreadable)
        result.new = len(drift.record_seen(self.db, held, now))
        result.resolved = self._close_stale(seen, set(unexplained), active, set(keys), now)
        for finding in self._to_remove(removal, set(unexplained), keys):
            self._remove(finding, keys, result)
        result.reported = self._report(report)
        result.findings = drift.open_findings(self.db)
        if result.new or result.removed or result.unreadable:
            log.info(
                "drift reconcile: %d device(s) read of %d, %d new finding(s), %d removed, %d open, %d unreadable",
                result.read,
                result.devices,
                result.new,
                len(result.removed),
                len(result.findings),
                len(result.unreadable),
            )
        return result

    # -- reading -------------------------------------------------------------------------------------

    def _observe(self, keys: set[str]) -> _Observation:
        """The profile keys each device holds: in bulk when the tailnet can (the built-in store), else per device."""
        seen = _Observation()
        devices = self.tailnet.list_devices()
        seen.names = {d.id: d.name for d in devices}
        if not keys:
            seen.read = set(seen.names)
            return seen
        bulk = getattr(self.tailnet, "attributes_with_keys", None)
        if callable(bulk):
            for device_id, values in bulk(keys).items():
                if device_id in seen.names:
                    seen.held.update({(device_id, k): v for k, v in values.items() if k in keys})
            seen.read = set(seen.names)
            return seen
        for i, device in enumerate(self._batch(devices)):
            if i and self.pace:
                self.sleep(self.pace)
            self._read_one(device, keys, seen)
        return seen

    def _batch(self, devices: Sequence[Device]) -> list[Device]:
        """The devices this run reads: up to ``max_reads``, starting after the last one the previous run read."""
        ordered = sorted(devices, key=lambda d: d.id)
        if self.max_reads is None or len(ordered) <= self.max_reads:
            self._cursor = None
            return ordered
        start = next((i for i, d in enumerate(ordered) if self._cursor is not None and d.id > self._cursor), 0)
        batch = (ordered[start:] + ordered[:start])[: self.max_reads]
        self._cursor = batch[-1].id
        return batch

    def _read_one(self, device: Device, keys: set[str], seen: _Observation) -> None:
        try:
            current = self.tailnet.get_attributes(device.id)
        except DeviceNotFound:  # removed since the listing: not a device any more (its findings are closed)
            seen.names.pop(device.id, None)
            return
        except Exception as exc:  # the API refused or failed after its retries: say so, go on
            log.warning("drift reconcile cannot read the attributes of %s: %s", device.name, exc)
            seen.unreadable.append(Unreadable(device.id, device.name, getattr(exc, "message", None) or str(exc)))
            return
        seen.read.add(device.id)
        seen.held.update({(device.id, k): v for k, v in current.attributes.items() if k in keys})

    def active(self, keys: set[str], device_id: str | None = None) -> dict[DeviceKey, AccessRequestRow]:
        """Requests granting or granted a profile key (of one device), by (device, key): the newest wins."""
        if not keys:
            return {}
        stmt = select(AccessRequestRow).where(
            AccessRequestRow.status.in_([str(s) for s in ACTIVE]), AccessRequestRow.attribute.in_(list(keys))
        )
        if device_id is not None:
            stmt = stmt.where(AccessRequestRow.device_id == device_id)
        with self.db.session() as session:
            rows = list(session.scalars(stmt.order_by(AccessRequestRow.id)))
            session.expunge_all()
        return {(row.device_id, row.attribute): row for row in rows}

    # -- closing and removing ------------------------------------------------------------------------

    def _close_stale(
        self,
        seen: _Observation,
        unexplained: set[DeviceKey],
        active: dict[DeviceKey, AccessRequestRow],
        keys: set[str],
        now: datetime,
    ) -> dict[str, int]:
        """Close open findings this run shows no longer hold: explained by a grant, or gone."""
        closing: dict[int, Resolution] = {}
        for finding in drift.open_findings(self.db):
            where = (finding.device_id, finding.attribute)
            if finding.attribute not in keys or finding.device_id not in seen.names:
                closing[finding.id] = Resolution.GONE  # no longer a profile's key, or no longer a device
            elif finding.device_id in seen.read and where not in unexplained:
                closing[finding.id] = Resolution.GRANTED if where in active else Resolution.GONE
        closed = drift.resolve(self.db, closing, now)
        if not closed:
            return {}
        counts: dict[str, int] = {}
        for resolution in closing.values():
            counts[str(resolution)] = counts.get(str(resolution), 0) + 1
        return counts

    def _to_remove(
        self, removal: Removal, unexplained: set[DeviceKey], keys: dict[str, list[Profile]]
    ) -> list[Finding]:
        """Open findings seen this run that ``removal`` covers."""
        if removal is Removal.NONE or not unexplained:
            return []
        return [
            f
            for f in drift.open_findings(self.db, device_ids={d for d, _ in unexplained})
            if (f.device_id, f.attribute) in unexplained
            and (removal is Removal.ALL or any(p.remove_unexplained for p in keys.get(f.attribute, [])))
        ]

    def _remove(self, finding: Finding, keys: dict[str, list[Profile]], result: ReconcileReport) -> None:
        """Delete one unexplained attribute, checking again right before that it still holds with no grant."""
        try:
            removed = _Removal(self, finding).run(keys)
        except Exception as exc:  # the tailnet refused or failed: the finding stays open, the next run tries again
            log.warning("drift reconcile cannot remove %s from %s: %s", finding.attribute, finding.device_name, exc)
            result.not_removed.append((finding, getattr(exc, "message", None) or str(exc)))
            return
        if removed:
            result.removed.append(replace(finding, resolved_at=self.clock(), resolution=str(Resolution.REMOVED)))

    # -- reporting -----------------------------------------------------------------------------------

    def _report(self, report: Report | None) -> int:
        """Hand the findings nobody reported yet to ``report``; released again when it could tell nobody."""
        if report is None:
            return 0
        claimed = drift.claim_unreported(self.db, self.clock())
        if not claimed:
            return 0
        try:
            told = report(claimed)
        except Exception:
            log.exception("reporting %d drift finding(s) to the admins failed", len(claimed))
            told = False
        if not told:
            drift.release(self.db, claimed)
            return 0
        return len(claimed)


class _Removal:
    """Removing one finding's attribute: check, delete, then make sure no grant started in between."""

    def __init__(self, reconciler: Reconciler, finding: Finding) -> None:
        self.r = reconciler
        self.f = finding
        namespace = finding.attribute.split(":", 1)[0]
        self.actor = Actor.system(ACTOR_NAME, namespace)

    def run(self, keys: dict[str, list[Profile]]) -> bool:
        """True when the attribute was removed (the finding is then resolved ``removed``, audited)."""
        f, now = self.f, self.r.clock()
        try:
            current = self.r.tailnet.get_attributes(f.device_id)
        except DeviceNotFound:
            return self._close(Resolution.GONE, now)
        value = current.attributes.get(f.attribute)
        if value is None:
            return self._close(Resolution.GONE, now)
        if self._grant() is not None:
            return self._close(Resolution.GRANTED, now)
        profiles = ", ".join(p.id for p in keys.get(f.attribute, [])) or f.profile_id
        comment = f"accessbot reconcile: no active grant of profile {profiles} explains it"[:200]
        try:
            self.r.tailnet.delete_attribute(f.device_id, f.attribute, actor=self.actor, comment=comment)
        except NotFound:
            return self._close(Resolution.GONE, now)
        raced = self._grant()
        if raced is not None:  # a grant started between the check and the delete: put its write back
            self._restore(raced)
            return self._close(Resolution.GRANTED, now)
        now = self.r.clock()  # after the delete: the audit event follows the tailnet's own record of it
        with self.r.db.session() as session:
            if drift.resolve_in(session, f.id, Resolution.REMOVED, now):
                details = {"finding": f.id, "profile": f.profile_id, "device": f.device_name}
                audit.record(
                    session,
                    at=now,
                    actor=ACTOR_ID,
                    action=DRIFT_REMOVED,
                    target=audit.attribute_target(f.device_id, f.attribute),
                    old=value,
                    comment=comment,
                    details={**details, "first_seen": f.first_seen_at.isoformat()},
                )
        return True

    def _grant(self) -> AccessRequestRow | None:
        return self.r.active({self.f.attribute}, self.f.device_id).get((self.f.device_id, self.f.attribute))

    def _close(self, resolution: Resolution, now: datetime) -> bool:
        drift.resolve(self.r.db, {self.f.id: resolution}, now)
        return False

    def _restore(self, row: AccessRequestRow) -> None:
        """Write back the attribute of a grant that started while reconcile deleted it (value and expiry of the
        grant: its ``expires_at``, or, while it is still writing, the earliest expiry its write can have)."""
        expiry = row.expires_at
        if expiry is None and row.granting_since is not None:
            expiry = row.granting_since + timedelta(seconds=row.duration_seconds)
        comment = f"accessbot reconcile: put back, request {row.id} was granted meanwhile"
        self.r.tailnet.set_attribute(
            row.device_id, row.attribute, row.value, actor=self.actor, expiry=expiry, comment=comment
        )
        with self.r.db.session() as session:
            audit.record(
                session,
                at=self.r.clock(),
                actor=ACTOR_ID,
                action=DRIFT_RESTORED,
                target=audit.attribute_target(row.device_id, row.attribute),
                new=row.value,
                expiry=expiry,
                comment=comment,
                details={"finding": self.f.id, "request": row.id},
            )
        log.warning(
            "drift reconcile put back %s on %s: request %s was granted meanwhile", row.attribute, row.device_id, row.id
        )
