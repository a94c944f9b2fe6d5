"""A typer group that knows its commands from a static table and imports a command's module only when needed.

Listing the commands (``accessbot --help``) must not import what they run on (SQLAlchemy, alembic, httpx, the
vendors, Slack): that took a second. As in click's lazy-loading pattern, looking a command up (``get_command``, to
run it or show its own ``--help``) imports its module; while the group prints its own help, a command not loaded yet
is listed through a stand-in that carries only its name and one-line help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

import typer
from typer.core import TyperCommand, TyperGroup

Command = TyperCommand | TyperGroup
"""What typer builds for a command (a function) or a group (a sub-``Typer``)."""

_LISTING = "app.cli.lazy.listing"
"""``ctx.meta`` key set while a group prints its own help."""


class _CommandModule(Protocol):
    def register(self, cli: typer.Typer) -> None: ...


@dataclass(frozen=True)
class LazyCommand:
    """A command of the table: the module whose ``register(cli)`` adds it, and its one-line help for the list
    (the same as the command's own: tests/unit/test_cli_startup.py compares them)."""

    module: str
    help: str


def load(module: str) -> dict[str, Command]:
    """Import ``module`` and build the commands its ``register`` adds to a Typer, by name."""
    commands = cast(_CommandModule, importlib.import_module(module))
    app = typer.Typer()
    commands.register(app)
    return cast(dict[str, Command], dict(typer.main.get_group(app).commands))


class _Commands(MutableMapping[str, Command]):
    """A group's commands by name: every name of the table is known without an import (typer's "did you mean"
    reads the keys); a command's module is imported when one of its commands is first looked up."""

    def __init__(self, table: Mapping[str, LazyCommand], loaded: Mapping[str, Command]) -> None:
        self._table = table
        self._loaded = dict(loaded)

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded and name in self._table:
            for loaded_name, command in load(self._table[name].module).items():
                self._loaded.setdefault(loaded_name, command)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("the commands of a lazy group cannot be removed")

    def __iter__(self) -> Iterator[str]:
        yield from self._table
        yield from (name for name in self._loaded if name not in self._table)

    def __len__(self) -> int:
        return len(self._table.keys() | self._loaded.keys())


class LazyGroup(TyperGroup):
    """A ``TyperGroup`` whose commands come from ``table`` (set it in a subclass), in the table's order."""

    table: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.table, self.commands)

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)  # the names only: TyperGroup's reads every command, loading them all

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Command | None:
        commands = cast(_Commands, self.commands)
        if ctx.meta.get(_LISTING) and cmd_name in self.table and not commands.is_loaded(cmd_name):
            return TyperCommand(cmd_name, help=self.table[cmd_name].help)
        return commands.get(cmd_name)

    def get_help(self, ctx: typer.Context) -> str:
        ctx.meta[_LISTING] = True
        try:
            return super().get_help(ctx)
        finally:
            del ctx.meta[_LISTING]
