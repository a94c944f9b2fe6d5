"""The ``accessbot`` command line (typer). Each command group lives in its own module, imported when it runs."""

from __future__ import annotations

import sys
from typing import Any

import typer

from app.cli.common import fail, injected
from app.cli.lazy import LazyCommand, LazyGroup
from app.core.errors import ConfigError, EnvironmentProblem
from app.tailnet.errors import TailnetError

COMMANDS: dict[str, LazyCommand] = {
    "audit": LazyCommand(
        "app.cli.audit", "Show the audit log in time order; expired attributes are purged (and audited) first."
    ),
    "serve": LazyCommand(
        "app.cli.serve", "Run the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on POST /slack/events."
    ),
    "worker": LazyCommand(
        "app.cli.serve",
        "Run only the scheduler: expiries, timeouts, reminders, scheduled starts, notices, sync, drift.",
    ),
    "sync": LazyCommand(
        "app.cli.sync",
        "Fetch the vendors' agents, match them to devices by serial number and write posture attributes now.",
    ),
    "doctor": LazyCommand(
        "app.cli.doctor", "Check the set-up (database, key, config, Slack, tailnet, EDR credentials); read-only."
    ),
    "demo": LazyCommand(
        "app.cli.demo", "Play request -> approve -> grant -> expiry offline, in seconds, through the real app."
    ),
    "request": LazyCommand(
        "app.cli.requests", "Ask for access as a Slack user from the terminal; the approvers decide in Slack."
    ),
    "reconcile": LazyCommand(
        "app.cli.reconcile",
        "List devices holding a profile's attribute with no active grant behind it; with --fix, remove it.",
    ),
    "db": LazyCommand("app.cli.db", "Database schema migrations."),
    "devices": LazyCommand("app.cli.devices", "Devices of the built-in tailnet: add, import, list, remove."),
    "attrs": LazyCommand("app.cli.attrs", "Posture attributes of a device: get, set, delete."),
    "tailnet": LazyCommand("app.cli.tailnet", "The built-in tailnet's Tailscale-compatible HTTP API."),
    "integrations": LazyCommand(
        "app.cli.integrations",
        "EDR and MDM posture integrations (ten vendors): connect, change, remove, list, vendors.",
    ),
    "posture": LazyCommand(
        "app.cli.posture",
        "Postures of the tailnet policy file: check a device, lint the file, see what a profile unlocks.",
    ),
    "requests": LazyCommand("app.cli.requests", "Access requests: list, show, cancel."),
    "request-clients": LazyCommand(
        "app.cli.request_clients", "Credentials of the request API (POST /api/v1/requests): create, list, revoke."
    ),
    "users": LazyCommand("app.cli.users", "Identity binding: Slack users' Tailscale logins (link, unlink, list)."),
}
"""Every command, in the order ``--help`` lists them, with the module that defines it and its one-line help."""


def _schema_outdated(exc: Exception) -> bool:
    """Whether ``exc`` is ``app.db.migrate.SchemaOutdated``, without importing alembic to find out (every
    ``--help`` of a command ends in an exception): it can only have been raised once that module is loaded."""
    migrate = sys.modules.get("app.db.migrate")
    return migrate is not None and isinstance(exc, migrate.SchemaOutdated)


class _Group(LazyGroup):
    """Turns accessbot's known errors into one clear line on stderr and a non-zero exit."""

    table = COMMANDS

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with injected(ctx.obj):
                return super().invoke(ctx)
        except ConfigError as exc:
            fail(str(exc), code=2)
        except TailnetError as exc:
            fail(exc.message, code=1)
        except EnvironmentProblem as exc:
            fail(exc.problem, code=2)
        except Exception as exc:
            if not _schema_outdated(exc):
                raise
            fail(str(exc), code=2)


cli = typer.Typer(
    cls=_Group,
    name="accessbot",
    help="Just-in-time Tailscale access from Slack, with EDR posture sync.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """``--version``: the installed package's version (importlib.metadata), then exit before any command."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version  # only when asked: not for every start

    try:
        installed = version("accessbot")
    except PackageNotFoundError:
        fail("accessbot is not installed as a package (pip install -e .), so it has no version to show", code=1)
    typer.echo(f"accessbot {installed}")
    raise typer.Exit()


@cli.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Nothing to do before a command but ``--version`` (typer builds a group, rather than a single command, for a
    callback)."""


def main() -> None:
    """Console-script entry point."""
    cli()
