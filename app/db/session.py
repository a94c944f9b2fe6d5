"""Engine creation and the one session helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import ConfigError
from app.db import problems, write_queue

URL_EXAMPLES = "e.g. sqlite:///accessbot.db or postgresql://user:password@host:5432/accessbot"


def normalize_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` to the psycopg 3 driver accessbot ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another connection kept the write lock past the busy
    timeout."""
    return "database is locked" in str(exc).lower()


def migration_lock_path(engine: Engine) -> Path:
    """The lock file of a SQLite database's one-time changes (WAL, migrations): ``<database file>.migrate.lock``."""
    return Path(f"{Path(engine.url.database or '').absolute()}.migrate.lock")


def _use_wal(engine: Engine) -> None:
    """Switch a SQLite file to WAL, once. The switch needs the file to itself and SQLite answers "database is
    locked" at once (no busy wait) to a second process switching at the same moment, so processes that start
    together on a new file take turns under the migration lock file."""
    with engine.connect() as conn:
        if str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() == "wal":
            return
    path = migration_lock_path(engine)
    lock = FileLock(path, timeout=120)
    try:
        lock.acquire()
    except Timeout:
        raise
    except OSError as exc:
        raise problems.LockFileUnusable(path, exc) from None
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        lock.release()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine: SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL uses psycopg 3."""
    url = normalize_url(url)
    parsed = _parsed(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        if memory:
            raise ConfigError(f"DATABASE_URL: in-memory SQLite is not supported; use a file path ({URL_EXAMPLES})")
        engine = _engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        _use_wal(engine)
        write_queue.install(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return _engine(url, **kwargs)


def _parsed(url: str) -> URL:
    """``url`` parsed; ``ConfigError`` (without echoing it: it may hold a password) when it is not a URL."""
    try:
        return make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL ({URL_EXAMPLES})") from None


def _engine(url: str, **kwargs: Any) -> Engine:
    """An engine whose connection failures a person can fix raise one-line errors (``app.db.problems``)."""
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ImportError):  # an unknown dialect, or one whose driver accessbot does not ship
        backend = make_url(url).get_backend_name()
        unsupported = f"DATABASE_URL names a database accessbot does not support, {backend!r}"
        raise ConfigError(f"{unsupported} ({URL_EXAMPLES})") from None
    problems.watch(engine)
    return engine


class Database:
    """An engine plus a session factory; ``with db.session() as s:`` commits or rolls back."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any exception."""
        session = self._factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def sqlite_database_path(database_url: str) -> Path | None:
    """The absolute path of an SQLite database file; ``None`` for any other database."""
    try:
        url = make_url(normalize_url(database_url))
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        raise ConfigError("DATABASE_URL: in-memory SQLite is not supported; use a file path")
    return Path(url.database).absolute()
