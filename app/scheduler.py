"""Background jobs (APScheduler 3): one scheduler per process that runs them.

Jobs: the expiry sweep (purges and audits expired attributes of the built-in tailnet), the access lifecycle
(request timeouts, reminders, ended grants, interrupted grants, then outbox delivery) and the device-index
refresh. Every job is safe to run in several processes at once: state changes are conditional updates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler

from app.core.timefmt import format_rfc3339

log = logging.getLogger(__name__)

EXPIRY_SWEEP_JOB = "expiry-sweep"


@runtime_checkable
class ExpiringTailnet(Protocol):
    """A tailnet whose expired attributes must be swept (the built-in store)."""

    def purge_expired(self) -> int:
        """Delete and audit every expired attribute; return how many."""
        ...


def sweep_expired(tailnet: ExpiringTailnet) -> int:
    """Run one expiry sweep and log what it removed."""
    purged = tailnet.purge_expired()
    if purged:
        log.info("expiry sweep removed %d expired attribute(s)", purged)
    return purged


def scheduler_status(scheduler: BaseScheduler | None) -> dict[str, Any] | None:
    """For health checks: whether ``scheduler`` runs and its jobs' next run times (``None``: no scheduler here).

    A job's ``next_run_time`` is RFC 3339 UTC, or ``None`` while the job is paused or not yet scheduled.
    """
    if scheduler is None:
        return None
    jobs = []
    for job in scheduler.get_jobs():
        when = getattr(job, "next_run_time", None)  # absent on jobs of a scheduler not yet started
        jobs.append({"id": job.id, "next_run_time": format_rfc3339(when) if when is not None else None})
    return {"running": scheduler.state == STATE_RUNNING, "jobs": jobs}


def build_scheduler(tailnet: object, *, sweep_every: timedelta) -> BackgroundScheduler:
    """A (not yet started) scheduler with the expiry sweep when ``tailnet`` needs one (the built-in store).

    The sweep runs at start and then every ``sweep_every`` (the config's ``tailnet.expiry_sweep_interval``,
    read at start); a run that falls behind is coalesced, never run twice at once.
    """
    scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
    if isinstance(tailnet, ExpiringTailnet):
        scheduler.add_job(
            sweep_expired,
            "interval",
            args=[tailnet],
            id=EXPIRY_SWEEP_JOB,
            name="expiry sweep",
            seconds=sweep_every.total_seconds(),
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
    return scheduler


ACCESS_JOB = "access-lifecycle"
DEVICE_INDEX_JOB = "device-index"


class LifecycleSteps(Protocol):
    """The access flow's time-driven steps (``app.access.lifecycle.Lifecycle``)."""

    def run_all(self) -> dict[str, int]:
        """Run every step once."""
        ...


def run_access_cycle(lifecycle: LifecycleSteps, deliver: Callable[[], int]) -> dict[str, int]:
    """Move due requests (timeouts, reminders, ended grants, interrupted grants), then deliver notices."""
    moved = lifecycle.run_all()
    delivered = deliver()
    if any(moved.values()) or delivered:
        log.info("access cycle: %s, %d notification(s) delivered", moved, delivered)
    return {**moved, "delivered": delivered}


def add_access_jobs(
    scheduler: BackgroundScheduler,
    *,
    lifecycle: LifecycleSteps,
    deliver: Callable[[], int],
    every_seconds: float = 20.0,
) -> None:
    """Add the access lifecycle (with outbox delivery).

    Safe to run in several processes at once: every state change is a conditional update and every
    notification is claimed by exactly one process.
    """
    scheduler.add_job(
        run_access_cycle,
        "interval",
        args=[lifecycle, deliver],
        id=ACCESS_JOB,
        name="access lifecycle",
        seconds=every_seconds,
        jitter=2,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )


def add_device_job(scheduler: BaseScheduler, refresh_devices: Callable[[], object]) -> None:
    """Refresh this process's device index (the Slack read model) every 30 s when it is stale.

    Every process that serves Slack runs it, with or without the shared jobs: the index is per process.
    """
    scheduler.add_job(
        refresh_devices,
        "interval",
        id=DEVICE_INDEX_JOB,
        name="device index refresh",
        seconds=30,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )


POSTURE_SYNC_JOB = "posture-sync"


def add_sync_job(scheduler: BackgroundScheduler, run_due: Callable[[], object], *, every_seconds: float = 60) -> None:
    """Check every minute which EDR integrations are due (interval, request, pause) and sync them.

    Each integration's sync holds a lock (PostgreSQL advisory lock, or a lease on SQLite), so schedulers in
    several processes never sync one integration twice at the same time.
    """
    scheduler.add_job(
        run_due,
        "interval",
        id=POSTURE_SYNC_JOB,
        name="posture sync",
        seconds=every_seconds,
        jitter=5,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )


RECONCILE_JOB = "drift-reconcile"


def add_reconcile_job(scheduler: BaseScheduler, reconcile: Callable[[], object], *, every: timedelta) -> None:
    """Drift reconcile every ``every`` (config ``reconcile_interval``, read at start), the first a minute after start.

    Safe in several processes at once: findings are rows with a unique (device, attribute), each reported by the
    one process whose conditional update claims it, and a removal checks the device again right before it.
    """
    scheduler.add_job(
        reconcile,
        "interval",
        id=RECONCILE_JOB,
        name="drift reconcile",
        seconds=every.total_seconds(),
        jitter=30,
        next_run_time=datetime.now(UTC) + timedelta(minutes=1),
        max_instances=1,
        coalesce=True,
    )
