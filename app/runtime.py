"""Wire settings, database and tailnet together for one process (CLI, server, worker)."""

from __future__ import annotations

from dataclasses import dataclass

from app.config.settings import Settings, get_settings
from app.core.clock import Clock, utcnow
from app.db import Database
from app.db.migrate import ensure_current
from app.tailnet import Tailnet, make_tailnet


@dataclass
class Runtime:
    """What a command needs: settings, an up-to-date database and the chosen tailnet adapter."""

    settings: Settings
    db: Database
    tailnet: Tailnet
    clock: Clock = utcnow


def open_runtime(settings: Settings | None = None, *, clock: Clock = utcnow) -> Runtime:
    """Open the database (an embedded SQLite one is upgraded by itself) and choose the adapter."""
    settings = settings or get_settings()
    _ = settings.config  # validate the YAML file early; raises ConfigError naming field and file
    db = Database(settings.database_url)
    ensure_current(db.engine, auto_upgrade=db.dialect == "sqlite")
    return Runtime(settings=settings, db=db, tailnet=make_tailnet(settings, db, clock=clock), clock=clock)
