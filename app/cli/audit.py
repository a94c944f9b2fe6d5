"""``accessbot audit``: read the audit log."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from app.cli.attrs import purge_expired
from app.cli.common import console, fail, opened_services, print_table
from app.core.timefmt import format_rfc3339, parse_duration, parse_rfc3339
from app.db import audit as audit_log


def parse_since(text: str, now: datetime) -> datetime:
    """``1h`` → one hour before ``now``; otherwise an RFC 3339 time. ``ValueError`` if neither."""
    try:
        return now - parse_duration(text)
    except OverflowError:
        raise ValueError(f"duration {text!r} reaches back too far") from None
    except ValueError:
        pass
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}; expected a duration back from now such as 1h or 2d, or RFC 3339 "
            "such as 2026-01-02T15:04:05Z"
        ) from None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _change(event: audit_log.AuditEvent) -> str:
    if event.old_value is None and event.new_value is None:
        return ""
    return f"{_cell(event.old_value) or '∅'} → {_cell(event.new_value) or '∅'}"


def audit_cmd(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only events since then: a duration back (1h, 2d) or RFC 3339"),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="Only this action, e.g. 'Update node attribute' (any case)"),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor, e.g. cli:alice")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the newest N events that match")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one event per line")] = False,
) -> None:
    """Show the audit log in time order; expired attributes are purged (and audited) first."""
    with opened_services() as rt:
        start: datetime | None = None
        if since is not None:
            try:
                start = parse_since(since, rt.clock())
            except ValueError as exc:
                fail(f"--since: {exc}")
        purge_expired(rt.tailnet)
        with rt.db.session() as session:
            events = audit_log.query(session, since=start, action=action, actor=actor, limit=limit)
    if as_json:
        sys.stdout.write("".join(json.dumps(event.to_json()) + "\n" for event in events))
        return
    if not events:
        console.print("no audit events", highlight=False)
        return
    table = Table("time", "actor", "action", "target", "old → new", "expiry", "comment")
    for event in events:
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    format_rfc3339(event.at),
                    event.actor,
                    event.action,
                    event.target,
                    _change(event),
                    format_rfc3339(event.expiry) if event.expiry else "",
                    event.comment or "",
                )
            )
        )
    print_table(table)


def register(cli: typer.Typer) -> None:
    """Add the ``audit`` command to the CLI."""
    cli.command("audit")(audit_cmd)
