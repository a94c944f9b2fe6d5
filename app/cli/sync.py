"""``accessbot sync [VENDOR]``: run EDR posture syncs now, with a progress bar."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.common import console, fail, opened_services
from app.vendors.integrations import IntegrationError
from app.vendors.sync import SyncReport, SyncRunner


def _print_report(report: SyncReport) -> None:
    if report.result == "ok":
        console.print(
            f"[green]✓[/] {report.label}: {report.summary}; {report.sets} set, {report.deletes} removed "
            f"on {report.devices_changed} devices in {report.write_calls} write calls",
            highlight=False,
            soft_wrap=True,
        )
        extras = []
        if report.agents_without_serial:
            extras.append(f"{report.agents_without_serial} agents without a serial number")
        if report.devices_without_identity:
            extras.append(f"{report.devices_without_identity} devices without identity")
        if report.duplicate_serials_resolved:
            extras.append(f"{report.duplicate_serials_resolved} duplicate serials resolved")
        if extras:
            console.print("  " + "; ".join(extras), highlight=False, soft_wrap=True)
    elif report.result == "skipped":
        console.print(f"[yellow]-[/] {report.label}: skipped ({report.error})", highlight=False, soft_wrap=True)
    else:
        console.print(f"[red]✗[/] {report.label}: {report.error}", highlight=False, soft_wrap=True)


@contextmanager
def _reports_printed_here() -> Iterator[None]:
    """The runner logs each run's outcome for the scheduler's logs (a summary line, or a warning with the
    error); this command prints the same report itself, so those lines are held back while it runs (errors with
    a traceback, a bug, still show)."""
    runner_log = logging.getLogger(SyncRunner.__module__)
    before = runner_log.level
    runner_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        runner_log.setLevel(before)


def sync(
    vendor: Annotated[str | None, typer.Argument(help="huntress or sentinelone; all connected when omitted")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON")] = False,
) -> None:
    """Fetch the vendors' agents, match them to devices by serial number and write posture attributes now."""
    with opened_services() as runtime, _reports_printed_here():
        runtime.configure_logging()  # vendor retries are logged as the servers log them (format, redaction)
        runner = runtime.sync
        try:
            targets = (
                [runner.integrations.get(vendor).vendor] if vendor else [i.vendor for i in runner.integrations.list()]
            )
        except IntegrationError as exc:
            fail(str(exc))
        if not targets:
            fail("no EDR integration is connected; add one with `accessbot integrations add`")
        reports = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as bar:
            for target in targets:
                task = bar.add_task(f"{target}: agents", total=None)

                def progress(stage: str, done: int, total: int | None, task: int = task, target: str = target) -> None:
                    bar.update(task, description=f"{target}: {stage}", completed=done, total=total)

                reports.append(runner.run(target, progress=progress))
        if as_json:
            typer.echo(json.dumps([r.to_json() for r in reports], indent=2))
        else:
            for report in reports:
                _print_report(report)
        if any(r.result == "error" for r in reports):
            raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add ``sync``."""
    cli.command("sync")(sync)
