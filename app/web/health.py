"""The one health check every listener's ``/healthz`` answers with.

Healthy means the database answers; the body adds what an operator looks at next (this process's scheduled jobs,
the Slack device index) through ``details`` callables, so this module needs to know none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine, text

HealthResult = tuple[bool, dict[str, Any]]


def database_state(engine: Engine) -> str:
    """``ok`` when the database answers ``SELECT 1``, else ``error: <exception class>`` (no details: no secrets)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"


class HealthCheck:
    """``/healthz`` of a process: ok while its database answers (else 503), plus each ``details`` entry."""

    def __init__(self, engine: Engine, details: Mapping[str, Callable[[], Any]] | None = None) -> None:
        self.engine = engine
        self.details = dict(details or {})

    def add(self, name: str, detail: Callable[[], Any]) -> None:
        """Report ``detail()`` under ``name`` (e.g. the scheduler once it is started)."""
        self.details[name] = detail

    def __call__(self) -> HealthResult:
        database = database_state(self.engine)
        body: dict[str, Any] = {"ok": database == "ok", "database": database}
        for name, detail in self.details.items():
            body[name] = detail()
        return database == "ok", body
