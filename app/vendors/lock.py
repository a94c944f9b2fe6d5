"""One sync per integration at a time, across processes.

PostgreSQL: a session-level advisory lock, released by the database if the process dies. SQLite (one host):
a short lease on the integration row, taken with a conditional UPDATE and renewed by a heartbeat thread while
the sync runs. The lease names its owner (``pid@host#token``), so a process that finds the lease held by a
process of its own host that no longer exists (killed, crashed) takes it over at once instead of waiting for
it to run out; an owner it cannot check (another host) keeps the lease until it expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import or_, select, text, update

from app.core.clock import Clock
from app.db import Database
from app.db.tables.vendors import IntegrationRow

log = logging.getLogger(__name__)

ADVISORY_BASE = 0x41_42_53_00_0000  # "ABS" + integration id: accessbot's advisory-lock key space
LEASE = timedelta(minutes=2)
"""How long a SQLite lease lasts without a heartbeat; the heartbeat renews it every quarter of that."""
HOST_MAX = 40  # owner ids must fit integrations.lease_owner (64): pid (at most 7 digits), host, 12-digit token


def _host() -> str:
    return socket.gethostname()[:HOST_MAX]


def lease_owner() -> str:
    """A new owner id ``<pid>@<host>#<token>`` for this process."""
    return f"{os.getpid()}@{_host()}#{uuid.uuid4().hex[:12]}"


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host; ``True`` when that cannot be told (the safe answer)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: it exists, as another user; or no pid we can ask about
        return True
    return True


def owner_is_dead(owner: str | None) -> bool:
    """Whether ``owner`` was a process of this host that no longer runs (so its lease can be taken over).

    An owner id of another host, or not in the ``pid@host#token`` form, is never taken to be dead.
    """
    pid_text, at, rest = (owner or "").partition("@")
    host, hash_sign, _token = rest.rpartition("#")
    if not (at and hash_sign and pid_text.isdigit()) or host != _host():
        return False
    return not _process_exists(int(pid_text))


@contextmanager
def integration_lock(db: Database, integration_id: int, clock: Clock, *, lease: timedelta = LEASE) -> Iterator[bool]:
    """Yield True when this process holds the integration's sync lock, False when another one does."""
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            key = ADVISORY_BASE + integration_id
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    owner = lease_owner()
    got = _take_lease(db, integration_id, clock, owner, lease)
    if not got:
        yield False
        return
    stop = threading.Event()
    heartbeat = threading.Thread(
        target=_heartbeat,
        args=(db, integration_id, clock, owner, lease, stop),
        name=f"sync-lease-{integration_id}",
        daemon=True,
    )
    heartbeat.start()
    try:
        yield True
    finally:
        stop.set()
        heartbeat.join(timeout=lease.total_seconds())
        with db.session() as session:
            session.execute(
                update(IntegrationRow)
                .where(IntegrationRow.id == integration_id, IntegrationRow.lease_owner == owner)
                .values(lease_until=None, lease_owner=None)
            )


def _take_lease(db: Database, integration_id: int, clock: Clock, owner: str, lease: timedelta) -> bool:
    """Take the lease if it is free, has run out, or belongs to a dead process of this host."""
    now = clock()
    with db.session() as session:  # a read of its own: the UPDATE below re-checks the holder atomically
        holder = session.execute(
            select(IntegrationRow.lease_owner, IntegrationRow.lease_until).where(IntegrationRow.id == integration_id)
        ).first()
    free = or_(IntegrationRow.lease_until.is_(None), IntegrationRow.lease_until <= now)
    dead = None
    if holder is not None and holder.lease_until is not None and holder.lease_until > now:
        dead = holder.lease_owner if owner_is_dead(holder.lease_owner) else None
    condition = free if dead is None else or_(free, IntegrationRow.lease_owner == dead)
    with db.session() as session:
        result = session.execute(
            update(IntegrationRow)
            .where(IntegrationRow.id == integration_id, condition)
            .values(lease_until=now + lease, lease_owner=owner)
        )
        got = result.rowcount == 1  # type: ignore[attr-defined]
    if got and dead is not None:
        log.warning(
            "took over the sync lease of integration %s from %s, a process that no longer runs", integration_id, dead
        )
    return got


def _heartbeat(
    db: Database, integration_id: int, clock: Clock, owner: str, lease: timedelta, stop: threading.Event
) -> None:
    """Renew the lease every quarter of its length until ``stop``; give up if another owner took it."""
    while not stop.wait(lease.total_seconds() / 4):
        try:
            with db.session() as session:
                result = session.execute(
                    update(IntegrationRow)
                    .where(IntegrationRow.id == integration_id, IntegrationRow.lease_owner == owner)
                    .values(lease_until=clock() + lease)
                )
                kept = result.rowcount == 1  # type: ignore[attr-defined]
        except Exception:  # a busy database: try again at the next beat, well before the lease runs out
            log.warning("could not renew the sync lease of integration %s", integration_id, exc_info=True)
            continue
        if not kept:
            log.error("the sync lease of integration %s was taken over by another process", integration_id)
            return
