"""The database schema compared with the models, for the migration tests."""

from __future__ import annotations

import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.db import Database
from app.db.tables import Base

EXPRESSION_INDEXES = {"ix_devices_name_lower"}
"""Indexes on an expression, which SQLAlchemy cannot reflect (it warns and skips them): checked by name instead."""


def expression_indexes(db: Database) -> set[str]:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if db.dialect == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    with db.engine.connect() as conn:
        return {name for (name,) in conn.exec_driver_sql(query)} & EXPRESSION_INDEXES


def schema_diff(db: Database) -> list[Any]:
    """What differs between the database and the models, the expression indexes compared by name."""
    with db.engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    diff = [d for d in diff if not (d[0] in ("add_index", "remove_index") and d[1].name in EXPRESSION_INDEXES)]
    missing = EXPRESSION_INDEXES - expression_indexes(db)
    return diff + [("missing expression index", name) for name in sorted(missing)]
