"""``accessbot reconcile [--fix] [--json]``: devices holding a profile's attribute with no active grant behind it.

Exit status: 0 when no drift is open (after ``--fix``: everything found was removed) and every device was read;
1 when drift is open, or some devices could not be read (the answer is incomplete).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.access.drift import Finding
from app.access.reconcile import ReconcileReport, Removal
from app.cli.common import console, err_console, opened_services, print_json, print_table
from app.core.timefmt import format_rfc3339


def _table(findings: list[Finding]) -> Table:
    table = Table("device", "attribute", "value", "profile", "first seen", "reported")
    for f in findings:
        table.add_row(
            escape(f.device_name or f.device_id),
            escape(f.attribute),
            escape(json.dumps(f.value)),
            escape(f.profile_id),
            format_rfc3339(f.first_seen_at),
            format_rfc3339(f.reported_at) if f.reported_at else "not yet",
        )
    return table


def _print(result: ReconcileReport, fix: bool) -> None:
    for finding in result.removed:
        console.print(
            f"[green]✓[/] removed {escape(finding.attribute)} from {escape(finding.device_name or finding.device_id)}",
            highlight=False,
            soft_wrap=True,
        )
    for finding, error in result.not_removed:
        where = finding.device_name or finding.device_id
        err_console.print(
            f"[red]✗[/] could not remove {escape(finding.attribute)} from {escape(where)}: {escape(error)}",
            highlight=False,
            soft_wrap=True,
        )
    for device in result.unreadable:
        err_console.print(
            f"[yellow]![/] could not read {escape(device.device_name or device.device_id)}: {escape(device.error)}",
            highlight=False,
            soft_wrap=True,
        )
    if result.findings:
        print_table(_table(result.findings))
        hint = "" if fix else "; remove them with `accessbot reconcile --fix`"
        console.print(
            f"{len(result.findings)} attribute(s) held without an active grant{hint}", highlight=False, soft_wrap=True
        )
    else:
        console.print(f"No drift: {result.read} device(s) read; no profile attribute is held without an active grant.")


def reconcile(
    fix: Annotated[bool, typer.Option("--fix", help="Remove every attribute found (audited)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
) -> None:
    """List devices holding a profile's attribute with no active grant behind it; with --fix, remove it.

    Exit status 0: no drift; 1: drift is open, or some devices could not be read.
    """
    with opened_services() as runtime:
        result = runtime.reconciler().run(removal=Removal.ALL if fix else Removal.NONE)
    if as_json:
        print_json(result.to_json())
    else:
        _print(result, fix)
    if result.findings or result.unreadable:
        raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add ``reconcile``."""
    cli.command("reconcile")(reconcile)
