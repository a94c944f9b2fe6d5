"""SQLite: writers of every process queue in the kernel, not in SQLite's busy handler.

SQLite lets one connection write at a time. The others wait in its busy handler, which sleeps and tries again in
growing steps (1, 2, 5 ... up to 100 ms each), so under load a writer keeps sleeping after the lock is free: with
gunicorn's processes, the worker and the scheduler all writing to one file, a submission's single write
transaction reached 0.5-0.9 s at p99 in ``bench/load.py``. Here a connection takes an exclusive ``flock`` on
``<database>.write.lock`` just before its transaction's first write statement and gives it up when the
transaction ends: the kernel wakes the next writer as the lock is released.

Written here rather than with ``filelock`` because ``filelock`` waits by polling too, which is what this removes.
A thread already holding the queue through another connection does not queue again (it would wait for itself);
it falls back to SQLite's own busy wait, as without the queue. A process that dies releases its lock with it.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

_WRITES = re.compile(
    r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|ANALYZE|VACUUM|BEGIN\s+(IMMEDIATE|EXCLUSIVE))\b", re.IGNORECASE
)
"""Statements that take SQLite's write lock: DML, DDL, and a ``BEGIN IMMEDIATE`` that takes it before any read."""
_HELD = "write_queue_held"
_FD = "write_queue_fd"


def write_lock_path(engine: Engine) -> Path:
    """``<database file>.write.lock``: the file whose lock is the queue."""
    return Path(f"{Path(engine.url.database or '').absolute()}.write.lock")


_holders: dict[int, int] = {}
"""Thread id -> connections through which it holds the queue (a release may run on another thread: a pool's
check-in)."""
_holders_lock = threading.Lock()


def _held_by_this_thread() -> bool:
    return threading.get_ident() in _holders


def _count(thread: int, delta: int) -> None:
    with _holders_lock:
        left = _holders.get(thread, 0) + delta
        if left > 0:
            _holders[thread] = left
        else:
            _holders.pop(thread, None)


def install(engine: Engine) -> None:
    """Queue the writes of ``engine``'s connections (a SQLite file) with every other process's."""
    path = str(write_lock_path(engine))

    def release(info: dict[str, Any]) -> None:
        thread = info.pop(_HELD, None)
        if thread is not None:
            fcntl.flock(info[_FD], fcntl.LOCK_UN)
            _count(thread, -1)

    @event.listens_for(engine, "before_cursor_execute")
    def queue_first_write(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        info = conn.info  # the pooled DBAPI connection's: it outlives this Connection, like the transaction
        if _HELD in info or _held_by_this_thread() or not _WRITES.match(statement):
            return
        fd = info.get(_FD)
        if fd is None:
            fd = info[_FD] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        thread = threading.get_ident()
        info[_HELD] = thread
        _count(thread, 1)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def end_of_transaction(conn: Connection) -> None:
        release(conn.info)

    @event.listens_for(engine, "reset")
    def reset(dbapi_connection: Any, entry: ConnectionPoolEntry, reset_state: Any) -> None:
        release(entry.info)

    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection: Any, entry: ConnectionPoolEntry | None) -> None:
        if entry is not None:
            release(entry.info)

    @event.listens_for(engine, "close")
    def closed(dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        release(entry.info)
        fd = entry.info.pop(_FD, None)
        if fd is not None:
            os.close(fd)
