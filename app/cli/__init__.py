"""The ``accessbot`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from app.cli import attrs, audit, db, devices, integrations, posture, serve, sync, tailnet
from app.cli.common import fail, injected
from app.core.errors import ConfigError
from app.db.migrate import SchemaOutdated
from app.tailnet.errors import TailnetError


class _Group(TyperGroup):
    """Turns accessbot's known errors into one clear line on stderr and a non-zero exit."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with injected(ctx.obj):
                return super().invoke(ctx)
        except (ConfigError, SchemaOutdated) as exc:
            fail(str(exc), code=2)
        except TailnetError as exc:
            fail(exc.message, code=1)


cli = typer.Typer(
    cls=_Group,
    name="accessbot",
    help="Just-in-time Tailscale access from Slack, with EDR posture sync.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (db, devices, attrs, tailnet, audit, integrations, posture, serve, sync):
    module.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli()
