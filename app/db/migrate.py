"""Run alembic migrations programmatically (no alembic.ini needed), one migrator at a time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from app.db.problems import LockFileUnusable
from app.db.session import migration_lock_path

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATE_LOCK_TIMEOUT = 120.0
"""Seconds a process waits for another one's migration before it gives up (``MigrationLockTimeout``)."""
MIGRATE_ADVISORY_KEY = 0x41_42_4D_00_0000
"""PostgreSQL advisory-lock key of the migration: "ABM" in accessbot's key space (sync locks are "ABS" + id,
``app.vendors.lock.ADVISORY_BASE``)."""
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ran out


class SchemaOutdated(Exception):
    """The database is behind the code's migrations and must be upgraded first."""


class MigrationLockTimeout(SchemaOutdated):
    """Another process kept the migration lock past the wait (a ``SchemaOutdated``: the CLI prints one line)."""


def alembic_config(engine: Engine) -> AlembicConfig:
    """An alembic config bound to ``engine``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # configparser interpolates '%': escape it, or percent-encoded URLs (passwords, ?host=%2F...) break
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration the code knows."""
    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def sqlite_lock_path(engine: Engine) -> Path:
    """The migration lock file of a SQLite database: ``<database file>.migrate.lock`` beside it."""
    return migration_lock_path(engine)


def _timed_out(where: str, timeout: float) -> MigrationLockTimeout:
    return MigrationLockTimeout(
        f"another process holds the migration lock ({where}) and did not release it within {timeout:g} s; "
        "start again when it has finished (or stop it)"
    )


@contextmanager
def _sqlite_lock(engine: Engine, timeout: float) -> Iterator[None]:
    path = sqlite_lock_path(engine)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is migrating the database; waiting for %s (at most %g s)", path, timeout)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise _timed_out(str(path), timeout) from None
    except OSError as exc:  # not a Timeout: the lock file cannot be created (a read-only directory)
        raise LockFileUnusable(path, exc) from None
    try:
        yield
    finally:
        lock.release()


def _pg_acquire(conn: Connection, where: str, timeout: float) -> None:
    if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATE_ADVISORY_KEY}).scalar():
        return
    log.info("another process is migrating the database; waiting for %s (at most %g s)", where, timeout)
    conn.execute(text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": str(max(1, round(timeout * 1000)))})
    try:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATE_ADVISORY_KEY})
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise _timed_out(where, timeout) from None
        raise
    finally:
        conn.execute(text("RESET lock_timeout"))


@contextmanager
def _pg_lock(engine: Engine, timeout: float) -> Iterator[None]:
    where = f"advisory lock {MIGRATE_ADVISORY_KEY} in {engine.url.render_as_string(hide_password=True)}"
    # a session-level lock on a connection of its own (autocommit: no transaction left open while alembic
    # migrates on another connection); the server releases it if this process dies
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        _pg_acquire(conn, where, timeout)
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_ADVISORY_KEY})
            except DBAPIError:
                conn.invalidate()  # a broken connection: closing it is what releases the lock


def migration_lock(engine: Engine, timeout: float | None = None) -> AbstractContextManager[None]:
    """Hold the database's migration lock so that processes starting at once don't run the same migration
    twice: a file lock beside a SQLite file, an advisory lock on PostgreSQL. Waits at most ``timeout`` seconds
    (default ``MIGRATE_LOCK_TIMEOUT``), then raises ``MigrationLockTimeout``."""
    wait = MIGRATE_LOCK_TIMEOUT if timeout is None else timeout
    if engine.dialect.name == "sqlite":
        return _sqlite_lock(engine, wait)
    if engine.dialect.name == "postgresql":
        return _pg_lock(engine, wait)
    return nullcontext()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision`` under the migration lock; return the revision it was at before."""
    with migration_lock(engine):
        before = current_revision(engine)
        command.upgrade(alembic_config(engine), revision)
        return before


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Upgrade an embedded database by itself; otherwise refuse to run on an outdated schema.

    The revision is read without the lock first (the usual case: already at head); only an upgrade takes the
    lock, and reads the revision again under it, since a process that held it before may have done the upgrade.
    """
    current = current_revision(engine)
    if current == head_revision():
        return
    if not auto_upgrade:
        raise SchemaOutdated(
            f"the database is at revision {current or '(empty)'} but this accessbot needs {head_revision()}; "
            "run `accessbot db upgrade`"
        )
    with migration_lock(engine):
        if current_revision(engine) != head_revision():
            command.upgrade(alembic_config(engine), "head")
