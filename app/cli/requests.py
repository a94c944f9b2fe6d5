"""``accessbot request`` (ask for access from a terminal) and ``accessbot requests list|show|cancel``.

A request from the CLI feeds the same approval flow as one from Slack: the requester is a Slack user (``--as``),
the approvers are asked in Slack (the DMs are sent by ``accessbot serve`` or ``accessbot worker``, which deliver
the outbox), and nothing here can approve. Cancelling is an operator's action, audited as ``cli:<os user>``.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.table import Table
from rich.text import Text

from app.access import outside
from app.access.errors import AccessError, SubmissionInvalid
from app.cli.common import cli_actor, console, err_console, fail, opened_services, print_json, print_table
from app.core.timefmt import format_duration, format_rfc3339, parse_duration, parse_rfc3339
from app.db.tables.access import RequestStatus

if TYPE_CHECKING:
    from app.bootstrap import Services
    from app.db.audit import AuditEvent

log = logging.getLogger(__name__)

group = typer.Typer(help="Access requests: list, show, cancel.", no_args_is_help=True)

OPTION_OF = {
    "requester": "--as",
    "profile": "--profile",
    "device": "--device",
    "duration": "--duration",
    "approver": "--approver",
    "reason": "--reason",
    "starts_at": "--start",
}
"""The CLI option behind each field of a submission's errors."""


def _invalid(exc: SubmissionInvalid) -> NoReturn:
    """One ``error:`` line per field, then exit 1."""
    for field, message in exc.errors.items():
        err_console.print(f"[bold red]error:[/] {OPTION_OF.get(field, field)}: {message}", markup=True, soft_wrap=True)
    raise SystemExit(1)


def resolve_user(rt: Services, ref: str, option: str) -> str:
    """A Slack user id from an id or an email (``users.lookupByEmail``; needs ``SLACK_BOT_TOKEN``)."""
    ref = ref.strip()
    if "@" not in ref:
        return ref
    if rt.slack_options.bot_token is None:
        fail(f"{option}: looking up {ref} needs SLACK_BOT_TOKEN; set it or give the Slack user id (U…)")
    from slack_sdk.errors import SlackApiError, SlackClientError  # only when an email is to be looked up

    try:
        return str(rt.slack_client.users_lookupByEmail(email=ref)["user"]["id"])
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else str(exc)
        if error == "users_not_found":
            fail(f"{option}: no Slack user has the email {ref}")
        fail(f"{option}: Slack refused the lookup of {ref} ({error}); try again or give the user id")
    except SlackClientError as exc:
        fail(f"{option}: cannot reach Slack to look up {ref} ({exc}); give the user id or try again")


def _auto_approve(rt: Services, stored: outside.StoredRequest) -> outside.StoredRequest:
    """The profile's on-call auto-approval, as for a request made in Slack (a provider that is down, or anything
    else going wrong, leaves the request with its approvers)."""
    try:
        rt.access.auto_approve(stored.request.id)
    except Exception:
        log.exception("on-call auto-approval of request %s failed", stored.request.id)
        return stored
    return outside.get(rt.access.db, stored.request.id)


def _deliver_now(rt: Services, request_id: int) -> bool:
    """Send the request's queued Slack messages now, rather than leave them to ``accessbot serve``/``worker``'s
    outbox job; whether any went out (whatever did not stays queued, and the outbox retries it)."""
    if rt.slack_options.bot_token is None:
        return False
    try:
        return rt.notifier.deliver(request_id) > 0
    except Exception as exc:  # the messages stay queued: the outbox job delivers them
        log.warning("delivering the Slack messages of request %s now failed: %s", request_id, exc)
        return False


def request_cmd(
    profile: Annotated[str, typer.Option("--profile", help="The access profile's id (see accessbot.yml)")],
    device: Annotated[str, typer.Option("--device", help="The device's id, nodeId or unique name")],
    duration: Annotated[str, typer.Option("--duration", help="How long, e.g. 30m or 1h (one the profile offers)")],
    reason: Annotated[str, typer.Option("--reason", help="Why you need access (shown to the approvers)")],
    requester: Annotated[
        str, typer.Option("--as", help="The Slack user the request is for: a user id (U…) or their email")
    ],
    approvers: Annotated[
        list[str] | None,
        typer.Option("--approver", help="Who to ask (user id or email; repeatable). Default: every approver"),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", help="Scheduled access: when to write it, RFC 3339 (default: once approved)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored request as JSON")] = False,
) -> None:
    """Ask for access as a Slack user from the terminal; the approvers decide in Slack."""
    try:
        length: timedelta | None = parse_duration(duration)
    except ValueError as exc:
        fail(f"--duration: {exc}")
    try:
        starts_at = parse_rfc3339(start) if start is not None else None
    except ValueError as exc:
        fail(f"--start: {exc}")
    with opened_services() as rt:
        if rt.slack_options.bot_token is None:
            fail("set SLACK_BOT_TOKEN: requests are approved in Slack, and accessbot asks Slack who may approve")
        ask = outside.OutsideRequest(
            requester_id=resolve_user(rt, requester, "--as"),
            profile_id=profile.strip(),
            device_ref=device,
            duration=length,
            reason=reason,
            approver_ids=tuple(resolve_user(rt, a, "--approver") for a in approvers or ()),
            starts_at=starts_at,
        )
        try:
            stored = outside.submit(rt.access, ask, origin="cli")
        except SubmissionInvalid as exc:
            _invalid(exc)
        except AccessError as exc:
            fail(exc.message)
        stored = _auto_approve(rt, stored)
        sent = _deliver_now(rt, stored.request.id)
    if as_json:
        print_json(outside.to_json(stored))
        return
    r = stored.request
    say = console.print
    say(
        f"request #{r.id} {r.status}: {r.profile_id} on {r.device_name} for {format_duration(r.duration)}", markup=False
    )
    say(f"requester: {r.requester_id}; approvers asked in Slack: {', '.join(r.approver_ids)}", markup=False)
    if not sent:
        say("the Slack DMs are queued: `accessbot serve` or `accessbot worker` sends them", markup=False)
    say(f"follow it with `accessbot requests show {r.id}`", markup=False)


def _statuses(values: list[str]) -> list[RequestStatus]:
    known = {s.value for s in RequestStatus}
    wrong = [v for v in values if v.lower() not in known]
    if wrong:
        fail(f"--status: unknown status {', '.join(wrong)} (one of: {', '.join(sorted(known))})")
    return [RequestStatus(v.lower()) for v in values]


def _when(value: object) -> str:
    return format_rfc3339(value) if value is not None else ""  # type: ignore[arg-type]


@group.command("list")
def list_cmd(
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only requests in this status (repeatable), e.g. pending")
    ] = None,
    requester: Annotated[
        str | None, typer.Option("--requester", help="Only this requester: Slack user id or email")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=outside.MAX_LIST, help="At most N, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"requests": [...]}')] = False,
) -> None:
    """List access requests, newest first."""
    statuses = _statuses(status or [])
    with opened_services() as rt:
        found = outside.listing(rt.db, statuses=statuses, requester=requester, limit=limit)
    if as_json:
        print_json({"requests": [outside.to_json(s) for s in found]})
        return
    if not found:
        console.print("no requests", highlight=False)
        return
    table = Table("id", "status", "origin", "requester", "profile", "device", "duration", "created", "expires")
    for stored in found:
        r = stored.request
        cells = (
            str(r.id),
            str(r.status),
            stored.origin,
            r.requester_label,
            r.profile_id,
            r.device_name,
            format_duration(r.duration),
            _when(r.created_at),
            _when(r.expires_at),
        )
        table.add_row(*(Text(c) for c in cells))
    print_table(table)


def _load(rt: Services, request_id: int) -> outside.StoredRequest:
    try:
        return outside.get(rt.db, request_id)
    except AccessError as exc:
        fail(exc.message)


_TRAIL_HIDDEN = frozenset({"request_id", "profile", "device_id", "attribute"})
"""Audit details every event of a request repeats (shown once in the header instead)."""


def _facts(stored: outside.StoredRequest) -> list[str]:
    """The request's header lines."""
    r = stored.request
    client = f" (request client {stored.request_client_id})" if stored.request_client_id else ""
    approved = f" ({', '.join(r.approvals)})" if r.approvals else ""
    lines = [
        f"request #{r.id}: {r.status}",
        f"origin:     {stored.origin}{client}",
        f"requester:  {r.requester_label} ({r.requester_id})",
        f"profile:    {r.profile_id} ({r.attribute} = {json.dumps(r.value)})",
        f"device:     {r.device_name} ({r.device_id}){', ' + r.device_os if r.device_os else ''}",
        f"duration:   {format_duration(r.duration)}",
        f"reason:     {r.reason}",
        f"approvers:  {', '.join(r.approver_ids)}",
        f"approvals:  {len(r.approvals)} of {r.approvals_required}{approved}",
    ]
    times = (("starts", r.starts_at), ("granted", r.granted_at), ("expires", r.expires_at), ("ended", r.ended_at))
    for label, value in times:
        if value is not None:
            lines.append(f"{label + ':':<11} {_when(value)}")
    for label, text in (("ended by", stored.ended_by), ("denied", r.deny_reason), ("last error", r.last_error)):
        if text:
            lines.append(f"{label + ':':<11} {text}")
    return lines


def _trail_table(events: list[AuditEvent]) -> Table:
    table = Table("time", "actor", "action", "details")
    for event in events:
        details = {k: v for k, v in event.details.items() if k not in _TRAIL_HIDDEN}
        shown = json.dumps(details) if details else ""
        table.add_row(*(Text(c) for c in (_when(event.at), event.actor, event.action, shown)))
    return table


@group.command("show")
def show_cmd(
    request_id: Annotated[int, typer.Argument(metavar="ID", help="The request's number")],
    as_json: Annotated[bool, typer.Option("--json", help="The request and its audit trail as JSON")] = False,
) -> None:
    """Show one request: status, device, approvals, and its audit trail."""
    with opened_services() as rt:
        stored = _load(rt, request_id)
        events = outside.trail(rt.db, request_id)
    if as_json:
        print_json(outside.to_json(stored) | {"audit": [e.to_json() for e in events]})
        return
    for line in _facts(stored):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    print_table(_trail_table(events))


@group.command("cancel")
def cancel_cmd(
    request_id: Annotated[int, typer.Argument(metavar="ID", help="The request's number")],
) -> None:
    """Cancel a pending or scheduled request (audited); the approvers' DMs are updated."""
    with opened_services() as rt:
        try:
            stored = outside.cancel(rt.db, request_id, actor=cli_actor().id, at=rt.clock())
        except AccessError as exc:
            fail(exc.message)
        _deliver_now(rt, request_id)
    r = stored.request
    console.print(
        f"request #{r.id} cancelled ({r.profile_id} on {r.device_name} for {r.requester_label})", markup=False
    )


def register(cli: typer.Typer) -> None:
    """Add ``request`` and the ``requests`` group."""
    cli.command("request")(request_cmd)
    cli.add_typer(group, name="requests")
