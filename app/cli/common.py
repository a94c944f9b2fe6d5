"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.config.settings import Settings
from app.core.clock import Clock, utcnow
from app.runtime import Runtime, open_runtime
from app.tailnet.models import Actor
from app.vendors.registry import REGISTRY, VendorRegistry
from app.web.server import HttpServer, ServerLimits, make_server

console = Console()
err_console = Console(stderr=True)

CLOCK: Clock = utcnow
"""The clock commands run on; tests replace it (monkeypatch) to control time."""

VENDORS: VendorRegistry = REGISTRY
"""The vendors commands know; tests replace it (monkeypatch) to add a test-only vendor."""


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def cli_actor() -> Actor:
    """The audit actor of a CLI user: ``cli:<os user>``, writing only ``custom:``."""
    return Actor(f"cli:{os_user()}")


def runtime() -> Runtime:
    """Open settings, database and tailnet for a command, on the clock ``CLOCK``."""
    return open_runtime(clock=CLOCK)


@contextmanager
def opened_runtime() -> Iterator[Runtime]:
    """``runtime()`` for the length of a ``with`` block; closes the database connections after."""
    rt = runtime()
    try:
        yield rt
    finally:
        rt.db.dispose()


def server_limits(settings: Settings) -> ServerLimits:
    """The limits of every HTTP listener, from the ``HTTP_*`` settings."""
    return ServerLimits(
        threads=settings.http_threads,
        connection_limit=settings.http_connection_limit,
        backlog=settings.http_backlog,
        idle_timeout=settings.http_idle_timeout,
        read_timeout=settings.http_read_timeout,
        max_body_bytes=settings.http_max_body_bytes,
    )


def listen(app: Any, host: str, port: int, settings: Settings) -> HttpServer:
    """Bind an HTTP server for ``app``; a port in use or an address we cannot bind is one line, exit 2."""
    try:
        return make_server(app, host, port, server_limits(settings))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        in_use = exc.errno == errno.EADDRINUSE
        hint = " (another process listens there: stop it or choose another port)" if in_use else ""
        fail(f"cannot listen on {host}:{port}: {reason}{hint}", code=2)


def serve_until_stopped(server: HttpServer) -> None:
    """Serve until SIGTERM or Ctrl-C; requests under way are finished before the server closes."""

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, name="http-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


def print_table(table: Table) -> None:
    """Print a table without hiding any part of a cell.

    On a terminal long cells wrap; otherwise (a pipe, a file) the table gets the width it needs, so
    scripts see whole ids on one line.
    """
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    needed = console.measure(table, options=console.options.update_width(100_000)).maximum
    Console(width=max(console.width, needed)).print(table)


def print_json(data: Any) -> None:
    """Write JSON to stdout exactly (no rich markup)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def exit_with(code: int) -> NoReturn:
    """Exit with ``code`` (typer-friendly)."""
    raise typer.Exit(code)


def os_user() -> str:
    """The operating-system user name, for ``cli:<user>`` audit actors."""
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"
