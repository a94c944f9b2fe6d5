"""``accessbot demo``: the access flow played offline through the real app (``app.bootstrap.demo``)."""

from __future__ import annotations

import typer

from app.cli.common import console, fail


def demo() -> None:
    """Play request -> approve -> grant -> expiry offline, in seconds, through the real app."""
    from app.bootstrap.demo import DemoFailed, run_demo  # the whole service graph and Bolt: when the demo runs

    try:
        run_demo(lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
    except DemoFailed as exc:
        fail(f"demo failed: {exc}")


def register(cli: typer.Typer) -> None:
    """Add the ``demo`` command to the CLI."""
    cli.command("demo")(demo)
