"""Write transactions of the built-in tailnet: per-device serialisation and retries of lost races.

Concurrent writers are serialised per device, so each write reads the values it replaces (and audits them as
``old``) under the same lock as it writes: on SQLite every attribute transaction starts with ``BEGIN IMMEDIATE``
(SQLite has one writer at a time; a deferred transaction would read before it holds the write lock); on
PostgreSQL a writer locks its devices' rows (``FOR NO KEY UPDATE``) in id order (one order everywhere: no deadlock
between two batches), before reading their attributes. Expiry purges (the sweep, and a writer clearing a key's
expired values on every device) take no device lock: a row one deletes under a writer's feet makes the writer's
DELETE or UPDATE match fewer rows than it read, a conflict retried from the start (and a row a writer changed
first is no longer expired when the purge, blocked on its row lock, rechecks it).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.core.clock import Clock
from app.db import Database
from app.db.session import is_locked
from app.db.tables import DeviceRow
from app.tailnet.errors import TailnetUnavailable

T = TypeVar("T")

WRITE_ATTEMPTS = 4
"""How often a write transaction is tried before a lock or a conflict becomes ``TailnetUnavailable``."""

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization failure and deadlock detected: the transaction was rolled back, try it again."""


class Conflict(Exception):
    """A concurrent transaction changed rows this one had read (a statement matched fewer rows than expected)."""


def retry_reason(exc: BaseException) -> str | None:
    """Why a failed attribute transaction may be run again: ``locked``, ``conflict``, ``race`` or None (not)."""
    if isinstance(exc, (Conflict, StaleDataError)):
        return "conflict"
    if isinstance(exc, IntegrityError):
        return "race"  # a lost insert race (a key registered or dropped meanwhile); the retry reads the winner's
    if isinstance(exc, OperationalError) and is_locked(exc):
        return "locked"
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return "conflict"
    return None


def run_write(db: Database, clock: Clock, work: Callable[[Session, datetime], T]) -> T:
    """Run ``work`` in one write transaction, retrying a few times on a lost race, a conflict or a lock.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it holds the write lock before its first read,
    so what ``work`` reads is what it writes over. When retries run out, a lock or a conflict is a
    ``TailnetUnavailable`` (503 class: nothing was written, try again).
    """
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with db.session() as session:
                if db.dialect == "sqlite":
                    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                return work(session, clock())  # "now" taken once the write lock is held
        except (Conflict, StaleDataError, DBAPIError) as exc:
            reason = retry_reason(exc)
            if reason is None:
                raise
            if attempt == WRITE_ATTEMPTS - 1:
                unavailable = _unavailable(reason)
                if unavailable is None:
                    raise
                raise unavailable from exc
            if reason != "locked":  # the busy timeout already waited; a conflict retries after a short jitter
                time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - not cryptographic
    raise AssertionError("unreachable")


def _unavailable(reason: str) -> TailnetUnavailable | None:
    """What the caller sees once retries ran out: a lock or a conflict is ``TailnetUnavailable``, a race itself."""
    if reason == "locked":
        return TailnetUnavailable(
            "the database is busy (another writer held its lock too long); nothing was written, try again"
        )
    if reason == "conflict":
        return TailnetUnavailable(
            "concurrent writes to the same attributes kept conflicting; nothing was written, try again"
        )
    return None


def lock_devices(db: Database, session: Session, device_ids: Iterable[str], chunk_size: int) -> None:
    """On PostgreSQL, lock these devices' rows (``FOR NO KEY UPDATE``) in id order until the transaction ends.

    Every attribute writer locks its devices before reading their attributes, always in id order (so two
    batches sharing devices queue instead of deadlocking). SQLite needs nothing: ``run_write`` began with
    ``BEGIN IMMEDIATE``, which already excludes every other writer.
    """
    if db.dialect != "postgresql":
        return
    for chunk in chunks(sorted(set(device_ids)), chunk_size):
        session.execute(
            select(DeviceRow.id).where(DeviceRow.id.in_(chunk)).order_by(DeviceRow.id).with_for_update(key_share=True)
        ).all()


def chunks(items: list[T], size: int) -> list[list[T]]:
    """``items`` cut into lists of at most ``size``: one IN (...) list per query stays within driver limits."""
    return [items[i : i + size] for i in range(0, len(items), size)]
