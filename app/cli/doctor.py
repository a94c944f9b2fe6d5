"""``accessbot doctor``: check the set-up before and after deploying, one line per check with what to do."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from app.cli import common
from app.cli.common import console, err_console, exit_with, print_json

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON")] = False,
) -> None:
    """Check the set-up (database, key, config, Slack, tailnet, EDR credentials); read-only.

    One line per check: ok, warn or fail, and what to do when it is not ok. Nothing is changed: the database is
    not migrated, no key file is created, nothing is posted to Slack. Exits 1 when any check fails (warnings do
    not).
    """
    from app.bootstrap.doctor import failed, run_checks  # the whole service graph: when the command runs

    lines = run_checks(vendors=common.vendors())
    if as_json:
        print_json({"ok": not failed(lines), "checks": [line.to_json() for line in lines]})
    else:
        for line in lines:
            text = Text.assemble((f"{line.status:<4}", STYLE[str(line.status)]), f"  {line.name}: {line.detail}")
            if line.hint:
                text.append(f" → {line.hint}")
            console.print(text, highlight=False, soft_wrap=True)
        counts = {status: sum(1 for line in lines if line.status == status) for status in STYLE}
        err_console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False, soft_wrap=True)
    exit_with(1 if failed(lines) else 0)


def register(cli: typer.Typer) -> None:
    """Add the ``doctor`` command to the CLI."""
    cli.command("doctor")(doctor_cmd)
