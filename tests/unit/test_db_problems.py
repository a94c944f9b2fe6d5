"""The one-line explanations of database failures, for libpq's messages a test cannot provoke on this machine's
PostgreSQL (it trusts local connections: no password is ever refused) and for the SQLite cases."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.db.problems import explain

URL = make_url("postgresql+psycopg://accessbot:s3cret@db.internal:6543/accessbot")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 6543 failed: FATAL:  password '
            'authentication failed for user "accessbot"',
            'PostgreSQL at db.internal:6543 refused the password of role "accessbot"',
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 6543 failed: fe_sendauth: no password '
            "supplied",
            "PostgreSQL at db.internal:6543 asks for a password",
        ),
        (
            'connection failed: could not translate host name "db.internal" to address: Name or service not known',
            "cannot find the PostgreSQL host 'db.internal'",
        ),
        ("connection timeout expired", "PostgreSQL at db.internal:6543 did not answer in time"),
        ("something new from libpq", "cannot connect to PostgreSQL at db.internal:6543: something new from libpq"),
    ],
)
def test_postgresql_connect_failures(message: str, expected: str) -> None:
    line = explain(psycopg.OperationalError(message), "postgresql", URL, connecting=True)
    assert line is not None and line.startswith(expected), line
    assert "s3cret" not in line and "\n" not in line


def test_postgresql_failures_after_connecting_are_left_alone() -> None:
    assert explain(psycopg.OperationalError("deadlock detected"), "postgresql", URL, connecting=False) is None


def test_sqlite_read_only_file(tmp_path: Path) -> None:
    import sqlite3

    url = make_url(f"sqlite:///{tmp_path / 'a.db'}")
    line = explain(sqlite3.OperationalError("attempt to write a readonly database"), "sqlite", url, connecting=False)
    assert line is not None and line.startswith(f"the SQLite file {tmp_path / 'a.db'} is read-only for this user")
    for connecting in (False, True):  # busy is not broken, even while connecting
        assert explain(sqlite3.OperationalError("database is locked"), "sqlite", url, connecting=connecting) is None
