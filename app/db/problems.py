"""Database failures a person can fix (no server there, a missing database or role, a SQLite file that cannot be
opened or is not a database), turned into one line naming the cause and what to check.

``watch(engine)`` hooks SQLAlchemy's ``handle_error`` event: when such a failure happens, the exception raised is
``DatabaseUnavailable`` (an ``OperationalError``) or ``DatabaseUnusable`` (a ``DatabaseError``) carrying that line as
``problem``. They subclass the class SQLAlchemy would have raised and keep its message and ``orig``, so every
``except OperationalError`` (busy SQLite, retryable PostgreSQL states) behaves as before; entry points print
``problem`` (``app.core.errors.EnvironmentProblem``) instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import DatabaseError, OperationalError

from app.core.errors import EnvironmentProblem

CHECK_URL = "check DATABASE_URL"

_CORRUPT = ("file is not a database", "database disk image is malformed")
_READ_ONLY = "attempt to write a readonly database"


class DatabaseUnavailable(OperationalError, EnvironmentProblem):
    """The database cannot be reached or opened; ``problem`` says why in one line."""

    def __init__(self, problem: str, statement: str | None, params: Any, orig: BaseException) -> None:
        super().__init__(statement, params, orig)
        self.problem = problem


class DatabaseUnusable(DatabaseError, EnvironmentProblem):
    """The database answers but cannot be used (a SQLite file that is not a database); ``problem`` says why."""

    def __init__(self, problem: str, statement: str | None, params: Any, orig: BaseException) -> None:
        super().__init__(statement, params, orig)
        self.problem = problem


class LockFileUnusable(EnvironmentProblem):
    """A lock file beside a SQLite database cannot be created (a read-only directory)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.problem = (
            f"cannot create the lock file {path} ({exc.strerror or exc}): the directory of the SQLite file must be "
            f"writable for this user; fix its permissions or {CHECK_URL}"
        )
        super().__init__(self.problem)


def watch(engine: Engine) -> None:
    """Raise ``DatabaseUnavailable``/``DatabaseUnusable`` instead of the failures ``explain`` recognises."""
    event.listen(engine, "handle_error", _translate)


def _translate(context: ExceptionContext) -> BaseException | None:
    orig = context.original_exception
    if context.is_pre_ping or isinstance(context.sqlalchemy_exception, EnvironmentProblem):
        return None  # a pre-ping failure is retried on a new connection; already translated
    problem = explain(orig, context.dialect.name, _url(context), connecting=context.connection is None)
    if problem is None:
        return None
    if isinstance(context.sqlalchemy_exception, OperationalError):
        return DatabaseUnavailable(problem, context.statement, context.parameters, orig)
    return DatabaseUnusable(problem, context.statement, context.parameters, orig)


def _url(context: ExceptionContext) -> URL | None:
    engine = context.engine
    return engine.url if engine is not None else None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def explain(orig: BaseException, dialect: str, url: URL | None, *, connecting: bool) -> str | None:
    """One line for a failure a person can fix, or ``None`` for anything else (left as it was).

    ``connecting``: the failure happened while opening a connection (every connect failure is about the
    environment); later only a corrupted or read-only SQLite file is.
    """
    if dialect == "sqlite":
        return _sqlite(orig, Path(url.database).absolute() if url is not None and url.database else None, connecting)
    if dialect == "postgresql" and connecting:
        return _postgresql(orig, url)
    if connecting:
        return f"cannot connect to the database: {_first_line(orig)}; {CHECK_URL}"
    return None


# -- SQLite -------------------------------------------------------------------------------------------


def _sqlite(orig: BaseException, path: Path | None, connecting: bool) -> str | None:
    message = str(orig).lower()
    if "database is locked" in message:
        return None  # busy, not broken: the callers' busy handling (retry, 503, "try again") applies
    where = f"the SQLite file {path}" if path is not None else "the SQLite file"
    if any(text in message for text in _CORRUPT):
        return (
            f"{where} is not a usable SQLite database ({_first_line(orig)}): restore it from a backup, "
            "or move it away to start with a new one"
        )
    if _READ_ONLY in message:
        return f"{where} is read-only for this user: make it and its directory writable, or {CHECK_URL}"
    if "unable to open database file" in message or connecting:
        return _sqlite_unopenable(orig, path, where)
    return None


def _sqlite_unopenable(orig: BaseException, path: Path | None, where: str) -> str:
    """Why SQLite cannot open ``path``: asked of the file system, since SQLite says only "unable to open"."""
    if path is None:
        return f"cannot open {where}: {_first_line(orig)}; {CHECK_URL}"
    directory = path.parent
    if not directory.exists():
        return f"cannot open {where}: the directory {directory} does not exist; create it or {CHECK_URL}"
    if not directory.is_dir():
        return f"cannot open {where}: {directory} is not a directory; {CHECK_URL}"
    if path.is_dir():
        return f"cannot open {where}: it is a directory; {CHECK_URL}"
    reason = _open_error(path)
    if reason is not None:
        return f"cannot open {where}: {reason}; make the directory {directory} writable for this user or {CHECK_URL}"
    return f"cannot open {where}: {_first_line(orig)}; {CHECK_URL}"


def _open_error(path: Path) -> str | None:
    """The operating system's reason for not opening ``path`` for writing (creating it, then removing what this
    check created), or ``None`` when it opens."""
    existed = path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    os.close(fd)
    if not existed:
        path.unlink(missing_ok=True)
    return None


# -- PostgreSQL ---------------------------------------------------------------------------------------

_MISSING_DATABASE = re.compile(r'database "(?P<name>[^"]*)" does not exist')
_MISSING_ROLE = re.compile(r'role "(?P<name>[^"]*)" does not exist')
_BAD_PASSWORD = re.compile(r'password authentication failed for user "(?P<name>[^"]*)"')
_PASSWORD_MISSING = "no password supplied"  # noqa: S105 - libpq's message, not a secret


def _server(url: URL | None) -> str:
    if url is None:
        return "the server"
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _postgresql(orig: BaseException, url: URL | None) -> str:
    message = str(orig)
    lower = message.lower()
    server = _server(url)
    if found := _MISSING_DATABASE.search(message):
        name = found["name"]
        return (
            f'PostgreSQL at {server} has no database "{name}": create it (CREATE DATABASE "{name}") and run '
            f"`accessbot db upgrade`, or {CHECK_URL}"
        )
    if found := _MISSING_ROLE.search(message):
        return f'PostgreSQL at {server} has no role "{found["name"]}": create it (CREATE ROLE ... LOGIN) or {CHECK_URL}'
    if found := _BAD_PASSWORD.search(message):
        return (
            f'PostgreSQL at {server} refused the password of role "{found["name"]}": check the password in '
            "DATABASE_URL (percent-encode special characters)"
        )
    if _PASSWORD_MISSING in lower:
        return f"PostgreSQL at {server} asks for a password: put it in DATABASE_URL (user:password@host)"
    if "connection refused" in lower:
        return (
            f"cannot connect to PostgreSQL at {server}: connection refused; is the server running there, "
            f"and are the host and port right? ({CHECK_URL})"
        )
    if "timeout" in lower or "timed out" in lower:
        return f"PostgreSQL at {server} did not answer in time: check the host, port and firewall ({CHECK_URL})"
    if "translate host name" in lower or "name or service not known" in lower or "nodename nor servname" in lower:
        return f"cannot find the PostgreSQL host {url.host if url else ''!r}: {CHECK_URL}"
    return f"cannot connect to PostgreSQL at {server}: {_first_line(orig)}; {CHECK_URL}"
