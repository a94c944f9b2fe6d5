"""Shared fixtures: a migrated database per test (SQLite, or PostgreSQL when configured), a clock."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.db import Database, normalize_url
from app.db.migrate import upgrade
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, AttributeSet, AttributeValue


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Each test starts with the root logger as it was: a CLI command run in-process configures logging for the
    process (its handler and level), which must not leak into the next test's captured output."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


PG_URL = os.environ.get("ACCESSBOT_TEST_DATABASE_URL")
START = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def written(attributes: AttributeSet | Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """The written attributes only: ``attributes`` without the read-only ``node:`` ones the tailnet derives.

    For tests about something else (a grant, a sync) where a device's ``node:os`` etc. are noise.
    """
    values = attributes.attributes if isinstance(attributes, AttributeSet) else attributes
    return {key: value for key, value in values.items() if not key.startswith("node:")}


def pytest_report_header() -> str:
    return f"accessbot database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite (per-test file)'}"


@pytest.fixture(scope="session")
def _db_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate once per session: a SQLite template file, or the PostgreSQL test database."""
    if PG_URL:
        db = Database(PG_URL)
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade(db.engine)
        db.dispose()
        return normalize_url(PG_URL)
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    db.dispose()
    return str(path)


@pytest.fixture
def db_url(_db_template: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty, migrated database for this test (also what the CLI gets as DATABASE_URL)."""
    if PG_URL:
        db = Database(_db_template)
        with db.engine.begin() as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ]
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        db.dispose()
        yield _db_template
        return
    path = tmp_path / "accessbot.db"
    shutil.copyfile(_db_template, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def builtin(db: Database, clock: FrozenClock) -> BuiltinTailnet:
    return BuiltinTailnet(db, clock=clock)


@pytest.fixture
def actor() -> Actor:
    return Actor("cli:tester")
