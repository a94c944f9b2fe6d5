"""Throwaway databases for the benchmarks: a temporary SQLite file, or a schema of its own in PostgreSQL."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from app.db import Database, normalize_url
from app.db.migrate import upgrade
from app.db.session import make_engine


def child_url(db: Database) -> str:
    """A ``DATABASE_URL`` under which another process (``accessbot ...``) sees the same database: for PostgreSQL
    the throwaway schema is passed as the connection's ``search_path``."""
    url = db.engine.url.render_as_string(hide_password=False)
    if db.engine.dialect.name != "postgresql":
        return url
    with db.engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def sqlite_database() -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="accessbot-bench-") as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        try:
            upgrade(db.engine)
            yield db
        finally:
            db.dispose()


@contextmanager
def postgres_database(url: str) -> Iterator[Database]:
    """A fresh schema of its own in the given PostgreSQL database, dropped at the end."""
    schema = f"accessbot_bench_{secrets.token_hex(4)}"
    admin = make_engine(normalize_url(url))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(make_engine(normalize_url(url), connect_args={"options": f"-csearch_path={schema}"}))
    try:
        upgrade(db.engine)
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
