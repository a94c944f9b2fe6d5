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
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.core.clock import Clock, utcnow
from app.tailnet.models import Actor

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from app.bootstrap import Services
    from app.vendors.registry import VendorRegistry
    from app.web.server import HttpServer, ServerLimits

console = Console()
err_console = Console(stderr=True)


def _shipped_vendors() -> VendorRegistry:
    """Every vendor accessbot ships."""
    from app.vendors.registry import REGISTRY  # the vendor clients (httpx, metrics): when a command runs, not --help

    return REGISTRY


@dataclass(frozen=True)
class CliDeps:
    """What a caller may inject into commands (``CliRunner().invoke(cli, args, obj=CliDeps(clock=...))``)."""

    clock: Clock = utcnow
    vendors: VendorRegistry = field(default_factory=_shipped_vendors)


_DEPS: ContextVar[CliDeps | None] = ContextVar("accessbot_cli_deps", default=None)


@contextmanager
def injected(obj: object) -> Iterator[None]:
    """Run one CLI invocation with ``obj`` (the ``obj=`` of ``invoke``) as its ``CliDeps`` if it is one (else the
    defaults, built when a command first asks: ``--help`` needs no vendor registry)."""
    token = _DEPS.set(obj if isinstance(obj, CliDeps) else None)
    try:
        yield
    finally:
        _DEPS.reset(token)


def _deps() -> CliDeps:
    return _DEPS.get() or CliDeps()


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def cli_actor() -> Actor:
    """The audit actor of a CLI user: ``cli:<os user>``, writing only ``custom:``."""
    return Actor(f"cli:{os_user()}")


def services() -> Services:
    """This process's services (settings from the environment) on the injected clock."""
    from app import bootstrap  # the whole service graph: loaded when a command runs, not for --help

    deps = _deps()
    return bootstrap.build(clock=deps.clock, vendors=deps.vendors)


def vendors() -> VendorRegistry:
    """The vendors commands know (a test may inject its own through ``CliDeps``)."""
    return _deps().vendors


@contextmanager
def opened_services() -> Iterator[Services]:
    """``services()`` for the length of a ``with`` block; closes the database connections after."""
    built = services()
    try:
        yield built
    finally:
        built.close()


def listen(app: WSGIApplication, host: str, port: int, limits: ServerLimits) -> HttpServer:
    """Bind an HTTP server for ``app``; a port in use or an address we cannot bind is one line, exit 2."""
    from app.web.server import make_server  # the HTTP server: for the commands that serve, not for every command

    try:
        return make_server(app, host, port, limits)
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
        import pwd  # POSIX only: absent on Windows

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"
