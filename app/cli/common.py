"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.clock import Clock, utcnow
from app.runtime import Runtime, open_runtime
from app.settings import os_user
from app.tailnet.models import Actor

console = Console()
err_console = Console(stderr=True)

CLOCK: Clock = utcnow
"""The clock commands run on; tests replace it (monkeypatch) to control time."""


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
