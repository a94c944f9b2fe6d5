"""Run alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutdated(Exception):
    """The database is behind the code's migrations and must be upgraded first."""


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


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Upgrade an embedded database by itself; otherwise refuse to run on an outdated schema."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise SchemaOutdated(
        f"the database is at revision {current or '(empty)'} but this accessbot needs {head_revision()}; "
        "run `accessbot db upgrade`"
    )
