"""``accessbot db``: database migrations."""

from __future__ import annotations

import typer

from app.cli.common import console
from app.db import Database
from app.db.migrate import current_revision, head_revision, upgrade


def _database() -> Database:
    from app import bootstrap  # the whole service graph: loaded when a command runs, not for --help

    return bootstrap.database()


group = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@group.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Upgrade the database schema (DATABASE_URL) to the newest revision."""
    db = _database()
    before = upgrade(db.engine, revision)  # under the migration lock: one `db upgrade` at a time
    after = current_revision(db.engine)
    console.print(f"database at revision {after} (was {before or 'empty'})", highlight=False)


@group.command("current")
def current_cmd() -> None:
    """Show the database's revision and the newest one this accessbot knows."""
    db = _database()
    console.print(f"current: {current_revision(db.engine) or '(empty)'}  head: {head_revision()}", highlight=False)


def register(cli: typer.Typer) -> None:
    """Add the ``db`` group to the CLI."""
    cli.add_typer(group, name="db")
