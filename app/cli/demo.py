"""``accessbot demo``: the access flow played offline through the real app (``app.bootstrap.demo``)."""

from __future__ import annotations

import sys

import typer

from app.cli.common import console, fail


def _print(line: str) -> None:
    """One line of the demo; on a terminal that cannot show Unicode, emoji stay ``:codes:`` and the rest is
    replaced rather than failing the demo half-way."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    unicode = encoding.lower().replace("-", "").replace("_", "").startswith("utf")
    shown = line if unicode else line.encode(encoding, "replace").decode(encoding)
    console.print(shown, highlight=False, markup=False, emoji=unicode, soft_wrap=True)


def demo() -> None:
    """Play request -> approve -> grant -> expiry offline, in seconds, through the real app."""
    from app.bootstrap.demo import DemoFailed, run_demo  # the whole service graph and Bolt: when the demo runs

    try:
        run_demo(_print)
    except DemoFailed as exc:
        fail(f"demo failed: {exc}")


def register(cli: typer.Typer) -> None:
    """Add the ``demo`` command to the CLI."""
    cli.command("demo")(demo)
