"""The posture sync: vendor agents → matched tailnet devices → only the attribute changes, in batches.

A sync takes a complete snapshot of agents (or writes nothing), matches agents to devices by serial number and
then MAC address, computes each matched device's attributes (only a ``<namespace>:stale`` marker for an agent
older than the integration's ``max_agent_age``), diffs them with what is there (``app.vendors.plan``), writes
the changes with ``set_many`` and removes the vendor's attributes from devices that no longer match.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from app.core import metrics
from app.core.clock import Clock, utcnow
from app.core.crypto import CipherError
from app.core.gc_pause import fewer_full_collections
from app.core.timefmt import format_duration, format_rfc3339
from app.db import Database
from app.db.tables.vendors import IntegrationRow, SyncStateRow
from app.tailnet.errors import TailnetError
from app.tailnet.models import Actor, AttributeChanges, AttributeValue
from app.tailnet.protocol import Tailnet
from app.vendors.base import VendorAuthError, VendorError, VendorSpec
from app.vendors.integrations import Integration, Integrations
from app.vendors.lock import integration_lock
from app.vendors.mapping import NamespaceMode
from app.vendors.plan import MatchableDevice, OwnedKeys, owned_keys, plan_sync

log = logging.getLogger(__name__)

AUTH_PAUSE = timedelta(hours=24)

SyncProgress = Callable[[str, int, int | None], None]
"""Called as (stage, done, total): stages "agents" and "writes"."""


@dataclass
class SyncReport:
    """The outcome of one sync, stored on the integration and shown by status commands."""

    vendor: str
    label: str
    result: str  # "ok", "error", "skipped"
    started_at: str
    finished_at: str | None = None
    error: str | None = None
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
    max_agent_age: str | None = None
    devices_changed: int = 0
    sets: int = 0
    deletes: int = 0
    write_calls: int = 0
    naive_write_calls: int = 0
    namespace_mode: str = NamespaceMode.VENDOR

    @property
    def summary(self) -> str:
        """ "N matches between X Tailscale devices with identifiers and Y <Vendor> agents"."""
        plural = "match" if self.matches == 1 else "matches"
        return (
            f"{self.matches} {plural} between {self.devices_with_identity} Tailscale devices with identifiers "
            f"and {self.agents} {self.label} agents"
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form (plus the summary sentence)."""
        return {**asdict(self), "summary": self.summary}


class SyncRunner:
    """Runs syncs for stored integrations against one tailnet; records results on the integration."""

    def __init__(
        self,
        db: Database,
        tailnet: Tailnet,
        integrations: Integrations,
        *,
        mode: NamespaceMode,
        interval: Callable[[], timedelta] = lambda: timedelta(minutes=15),
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.tailnet = tailnet
        self.integrations = integrations
        self.mode = mode
        self.interval = interval
        self.clock = clock

    # -- scheduling ----------------------------------------------------------------------------------

    def due(self) -> list[str]:
        """Vendors whose sync is due: requested, never run, or last run an interval (+ jitter) ago; not paused."""
        now = self.clock()
        return [integration.vendor for integration in self.integrations.list() if self._is_due(integration, now)]

    def _is_due(self, integration: Integration, now: datetime) -> bool:
        if integration.paused_until is not None and integration.paused_until > now:
            return False
        jitter = timedelta(seconds=int(hashlib.sha256(integration.vendor.encode()).hexdigest(), 16) % 30)
        last = integration.last_sync_started_at
        return integration.sync_requested_at is not None or last is None or last + self.interval() + jitter <= now

    def run_due(self) -> list[SyncReport]:
        """Run every due sync (the scheduler calls this every minute).

        Each one is checked again once its lock is held: another process may have run it since ``due()``
        looked, and then it is skipped rather than synced twice in a row.
        """
        return [self.run(vendor_id, only_if_due=True) for vendor_id in self.due()]

    def known_vendors(self) -> frozenset[str]:
        """Vendor ids a sync can run for (metrics label only these: an unknown id is not a vendor)."""
        return frozenset(self.integrations.vendors)

    # -- one sync ------------------------------------------------------------------------------------

    @metrics.observe_sync
    def run(self, vendor_id: str, *, progress: SyncProgress | None = None, only_if_due: bool = False) -> SyncReport:
        """Sync one integration now (a paused one too: asking explicitly overrides the pause).

        ``only_if_due``: skip it unless it is still due once the lock is held (the scheduler's runs).
        """
        integration = self.integrations.get(vendor_id)
        spec = self.integrations.vendors.vendor(integration.vendor)
        started = self.clock()
        report = SyncReport(spec.id, spec.label, "skipped", format_rfc3339(started), namespace_mode=self.mode)
        with integration_lock(self.db, integration.id, self.clock) as held:
            if not held:
                report.error = "another sync of this integration is running"
                return report
            if only_if_due:
                integration = self.integrations.get(vendor_id)
                if not self._is_due(integration, self.clock()):
                    report.error = "another process has just synced this integration"
                    return report
            # the sync starts now, holding the lock: a request made while this process waited for it is served by
            # this run, and the recorded start must not predate it
            started = self.clock()
            report.started_at = format_rfc3339(started)
            self._mark(integration.id, last_sync_started_at=started, sync_requested_at=None)
            try:
                with fewer_full_collections():  # a sync's objects live until it ends (app/core/gc_pause.py)
                    self._sync(integration, spec, report, progress)
            except VendorAuthError as exc:
                self._fail(integration, report, exc.message, pause=True)  # names the vendor and what it refused
            except VendorError as exc:
                self._fail(integration, report, exc.message, pause=False)
            except CipherError as exc:
                self._fail(integration, report, exc.message, pause=False)
            except TailnetError as exc:
                self._fail(integration, report, f"writing to the tailnet failed: {exc.message}", pause=False)
            except Exception as exc:  # a sync must always end with a recorded result
                log.exception("sync of %s failed", spec.id)
                self._fail(integration, report, f"unexpected error: {exc.__class__.__name__}", pause=False)
            else:
                self._succeed(integration, report)
        return report

    def disconnect(self, vendor_id: str, *, actor: str) -> int:
        """Remove an integration: first its attributes from every device (stale posture must not keep granting
        access), then the integration itself. If clearing fails the integration stays, so nothing is half-removed.
        Returns how many attributes were removed."""
        removed = self.clear(vendor_id)
        self.integrations.remove(vendor_id, actor=actor)
        return removed

    def clear(self, vendor_id: str) -> int:
        """Delete every attribute the integration owns from every device (before disconnecting it)."""
        integration = self.integrations.get(vendor_id)
        spec = self.integrations.vendors.vendor(integration.vendor)
        owned = owned_keys(spec, self.mode)
        current = self._current(integration, owned)
        changes: AttributeChanges = {
            device_id: dict.fromkeys(sorted(k for k in values if k in owned)) for device_id, values in current.items()
        }
        changes = {d: c for d, c in changes.items() if c}
        existing = {d.id for d in self._devices()}
        changes = {d: c for d, c in changes.items() if d in existing}
        self._apply(integration, spec, changes, SyncReport(spec.id, spec.label, "ok", ""), None)
        return sum(len(c) for c in changes.values())

    def _sync(
        self, integration: Integration, spec: VendorSpec, report: SyncReport, progress: SyncProgress | None
    ) -> None:
        owned = owned_keys(spec, self.mode)
        client = self.integrations.client(integration.vendor)
        # The tailnet's side is read while the vendor's pages arrive: a fetch mostly waits on the network (and
        # SQLite reads outside the GIL), so the two overlap instead of adding up. Both are needed at once to plan.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sync-{spec.id}-read") as reader:
            tailnet_side = reader.submit(lambda: (self._devices(), self._current(integration, owned)))
            try:
                agents = client.fetch_agents(
                    (lambda done, total: progress("agents", done, total)) if progress else None
                )
            finally:
                client.close()
            devices, current = tailnet_side.result()
        age = integration.max_agent_age
        plan = plan_sync(spec, devices, agents, current, self.mode, now=self.clock(), max_agent_age=age)
        report.max_agent_age = format_duration(age) if age is not None else None
        for name in (
            "agents",
            "agents_without_serial",
            "duplicate_serials_resolved",
            "devices",
            "devices_with_identity",
            "devices_without_identity",
            "matches",
            "matches_by_serial",
            "matches_by_mac",
            "ambiguous_macs",
            "agents_stale",
            "stale_matches",
            "sets",
            "deletes",
        ):
            setattr(report, name, getattr(plan, name))
        report.devices_changed = len(plan.changes)
        report.naive_write_calls = plan.sets + plan.deletes
        self._apply(integration, spec, plan.changes, report, progress)

    def _devices(self) -> list[MatchableDevice]:
        """Every device, through the tailnet's narrow sync listing when it has one (the built-in store)."""
        narrow = getattr(self.tailnet, "sync_devices", None)
        if callable(narrow):
            return list(narrow())
        return list(self.tailnet.list_devices())

    def _current(self, integration: Integration, owned: OwnedKeys) -> dict[str, dict[str, AttributeValue]]:
        """What the owned keys hold now: read from the store in bulk, or what this sync last wrote."""
        bulk = getattr(self.tailnet, "attributes_with_keys", None)
        if callable(bulk):
            return bulk(owned.keys, prefixes=owned.prefixes) if owned.prefixes else bulk(owned.keys)
        current: dict[str, dict[str, AttributeValue]] = {}
        with self.db.session() as session:
            rows = session.scalars(select(SyncStateRow).where(SyncStateRow.integration_id == integration.id))
            for row in rows:
                if row.key in owned:
                    current.setdefault(row.device_id, {})[row.key] = row.value
        return current

    def _apply(
        self,
        integration: Integration,
        spec: VendorSpec,
        changes: AttributeChanges,
        report: SyncReport,
        progress: SyncProgress | None,
    ) -> None:
        actor = Actor.system(f"sync:{spec.id}", *spec.namespaces)
        size = int(getattr(self.tailnet, "max_batch_devices", 100))
        device_ids = list(changes)
        done = 0
        for start in range(0, len(device_ids), size):
            chunk = {d: changes[d] for d in device_ids[start : start + size]}
            self.tailnet.set_many(chunk, actor=actor, comment=f"accessbot {spec.label} sync")
            report.write_calls += 1
            self._remember(integration.id, chunk)
            done += len(chunk)
            if progress:
                progress("writes", done, len(device_ids))

    def _remember(self, integration_id: int, chunk: AttributeChanges) -> None:
        """Record what was written, for tailnets that cannot be read in bulk."""
        if callable(getattr(self.tailnet, "attributes_with_keys", None)):
            return
        with self.db.session() as session:
            for device_id, per_key in chunk.items():
                for key, write in per_key.items():
                    session.execute(
                        delete(SyncStateRow).where(
                            SyncStateRow.integration_id == integration_id,
                            SyncStateRow.device_id == device_id,
                            SyncStateRow.key == key,
                        )
                    )
                    if write is not None:
                        session.add(
                            SyncStateRow(integration_id=integration_id, device_id=device_id, key=key, value=write.value)
                        )

    def _succeed(self, integration: Integration, report: SyncReport) -> None:
        now = self.clock()
        report.result = "ok"
        report.finished_at = format_rfc3339(now)
        self._mark(
            integration.id,
            last_sync_finished_at=now,
            last_success_at=now,
            last_result="ok",
            last_error=None,
            last_report=report.to_json(),
        )
        log.info(
            "sync %s: %s; %d set, %d deleted in %d calls",
            report.vendor,
            report.summary,
            report.sets,
            report.deletes,
            report.write_calls,
        )

    def _fail(self, integration: Integration, report: SyncReport, message: str, *, pause: bool) -> None:
        now = self.clock()
        report.result = "error"
        report.error = message
        report.finished_at = format_rfc3339(now)
        # last_report keeps the last successful sync's counts; the error is shown beside them
        values: dict[str, Any] = {"last_sync_finished_at": now, "last_result": "error", "last_error": message}
        if pause:
            values.update(paused_until=now + AUTH_PAUSE, pause_reason=message)
        self._mark(integration.id, **values)
        log.warning("sync %s failed: %s", integration.vendor, message)

    def _mark(self, integration_id: int, **values: Any) -> None:
        with self.db.session() as session:
            session.execute(update(IntegrationRow).where(IntegrationRow.id == integration_id).values(**values))
