"""``accessbot request-clients``: the credentials of the request API (create, list, revoke).

A client's token is printed once, when it is created; accessbot keeps only its hash. Creating and revoking are
audited as ``cli:<os user>``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from app.access.request_clients import ClientInvalid, ClientNotFound, RequestClient
from app.cli.common import cli_actor, console, fail, opened_services, print_json, print_table
from app.core.timefmt import format_rfc3339

group = typer.Typer(
    help="Credentials of the request API (POST /api/v1/requests): create, list, revoke.", no_args_is_help=True
)


def _json(client: RequestClient) -> dict[str, object]:
    return {
        "id": client.id,
        "description": client.description,
        "requester": client.requester_id,
        "profiles": list(client.profiles),
        "created_at": format_rfc3339(client.created_at),
        "created_by": client.created_by,
        "revoked_at": format_rfc3339(client.revoked_at) if client.revoked_at else None,
        "last_used_at": format_rfc3339(client.last_used_at) if client.last_used_at else None,
    }


@group.command("create")
def create_cmd(
    description: Annotated[str, typer.Option("--description", help="What the client is for, e.g. 'deploy bot'")],
    requester: Annotated[
        str | None,
        typer.Option("--requester", help="Pin the Slack user (U…) it requests as; default: each call names one"),
    ] = None,
    profiles: Annotated[
        list[str] | None,
        typer.Option("--profile", help="A profile it may request (repeatable); default: every profile"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the client and its token as JSON")] = False,
) -> None:
    """Create a request client and print its token (once: only a hash is kept)."""
    with opened_services() as rt:
        try:
            client, token = rt.request_clients.create(
                description=description, requester_id=requester, profiles=profiles or [], created_by=cli_actor().id
            )
        except ClientInvalid as exc:
            fail(exc.message)
    if as_json:
        print_json(_json(client) | {"token": token})
        return
    say = console.print
    say(f"created request client {client.id}", markup=False, highlight=False)
    say(f"token: {token}", markup=False, highlight=False, soft_wrap=True)
    say("store the token now: it is not shown again. Send it as `Authorization: Bearer <token>`.", markup=False)


@group.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help='Print {"clients": [...]}')] = False) -> None:
    """List request clients (revoked ones too); never their tokens."""
    with opened_services() as rt:
        clients = rt.request_clients.every()
    if as_json:
        print_json({"clients": [_json(c) for c in clients]})
        return
    if not clients:
        console.print("no request clients", highlight=False)
        return
    table = Table("id", "description", "requester", "profiles", "created", "last used", "revoked")
    for c in clients:
        cells = (
            c.id,
            c.description,
            c.requester_id or "(named per request)",
            ", ".join(c.profiles) or "(all)",
            format_rfc3339(c.created_at),
            format_rfc3339(c.last_used_at) if c.last_used_at else "never",
            format_rfc3339(c.revoked_at) if c.revoked_at else "",
        )
        table.add_row(*(Text(cell) for cell in cells))
    print_table(table)


@group.command("revoke")
def revoke_cmd(client_id: Annotated[str, typer.Argument(metavar="ID", help="The client's id (rc…)")]) -> None:
    """Revoke a request client: its token stops working at once (audited)."""
    with opened_services() as rt:
        try:
            client = rt.request_clients.revoke(client_id, actor=cli_actor().id)
        except ClientNotFound as exc:
            fail(exc.message)
    when = format_rfc3339(client.revoked_at) if client.revoked_at else ""
    console.print(f"request client {client.id} revoked ({when})", markup=False, highlight=False)


def register(cli: typer.Typer) -> None:
    """Add the ``request-clients`` group."""
    cli.add_typer(group, name="request-clients")
