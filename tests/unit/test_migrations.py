"""The migrations build the schema the models describe, and run down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db import Database
from app.db.migrate import SchemaOutdated, current_revision, ensure_current, head_revision, upgrade
from app.db.tables import access as _access_models  # noqa: F401  (register the access tables)
from app.db.tables import vendors as _vendor_models  # noqa: F401  (register the vendor tables)
from tests.schema import schema_diff


def test_models_match_migrations(db: Database) -> None:
    assert schema_diff(db) == []


def test_fresh_sqlite_upgrades_by_itself_but_postgres_style_refuses(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    with pytest.raises(SchemaOutdated, match="accessbot db upgrade"):
        ensure_current(db.engine, auto_upgrade=False)
    ensure_current(db.engine, auto_upgrade=True)
    assert current_revision(db.engine) == head_revision()


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'cycle.db'}")
    upgrade(db.engine)
    from alembic import command

    from app.db.migrate import alembic_config

    command.downgrade(alembic_config(db.engine), "base")
    assert current_revision(db.engine) is None
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()


def test_percent_encoded_urls_reach_alembic_unchanged(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from app.db.migrate import alembic_config

    url = "postgresql+psycopg://user:p%40ss%25word@localhost/db?host=%2Fvar%2Frun%2Fpostgresql"
    engine = create_engine(url)
    assert alembic_config(engine).get_main_option("sqlalchemy.url") == engine.url.render_as_string(hide_password=False)


def test_the_expiry_index_leaves_values_without_expiry_out(db: Database) -> None:
    """Migration 0009: the sweep's ``expires_at <= now`` needs only expiring values indexed (the query-plan test
    checks it still uses the index); values without expiry, nearly all of them, cost no index update."""
    query = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_device_attributes_expires_at'"
        if db.dialect == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_device_attributes_expires_at' "
        "AND schemaname = current_schema()"
    )
    with db.engine.connect() as conn:
        definition = conn.exec_driver_sql(query).scalar_one()
    assert "WHERE" in definition.upper() and "IS NOT NULL" in definition.upper(), definition
