"""``accessbot tailnet``: the built-in tailnet's HTTP API, its API keys and OAuth clients."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli import common
from app.cli.common import (
    cli_actor,
    console,
    err_console,
    fail,
    listen,
    opened_services,
    print_json,
    print_table,
    serve_until_stopped,
)
from app.core.timefmt import format_rfc3339, parse_duration
from app.tailnet.api import make_api, route_labels
from app.tailnet.auth import DEFAULT_CLIENT_SCOPES, SCOPES, ApiKeyInfo, AuthStore, OAuthClientInfo
from app.tailnet.builtin import BuiltinTailnet
from app.web.ops import HEALTH_PATH, METRICS_PATH

group = typer.Typer(help="The built-in tailnet's Tailscale-compatible HTTP API.", no_args_is_help=True)
keys = typer.Typer(help="API keys of the HTTP API.", no_args_is_help=True)
clients = typer.Typer(help="OAuth clients of the HTTP API.", no_args_is_help=True)
group.add_typer(keys, name="keys")
group.add_typer(clients, name="oauth-clients")


@contextmanager
def _store() -> Iterator[AuthStore]:
    with opened_services() as rt:
        yield AuthStore(rt.db, clock=rt.clock)


def _when(moment: datetime | None, none: str = "-") -> str:
    return format_rfc3339(moment) if moment is not None else none


# -- serve --------------------------------------------------------------------------------------------


@group.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8088, help="Port to listen on (0 picks a free one)"),
) -> None:
    """Serve the Tailscale-compatible API over the built-in tailnet, sweeping expired attributes."""
    services = common.services()
    if services.uses_tailscale or not isinstance(services.tailnet, BuiltinTailnet):
        fail(
            "the HTTP API serves the built-in tailnet only, but Tailscale credentials are configured; "
            "unset TAILSCALE_API_KEY / TAILSCALE_OAUTH_CLIENT_* to serve the built-in store",
            code=2,
        )
    tailnet = services.tailnet
    services.configure_logging()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per sweep
    scheduler = services.scheduler(access=False, sync=False)
    api = make_api(tailnet, services.db, clock=services.clock, proxies=services.trusted_proxies())
    routes = route_labels(api.routes, HEALTH_PATH, METRICS_PATH)
    app = services.ops(api, name="tailnet", health=services.health(scheduler), route=routes)
    server = listen(app, host, port, services.listener.limits)
    scheduler.start()
    console.print(
        f"serving tailnet {tailnet.name!r} on http://{host}:{server.server_port}/api/v2/ (Ctrl-C stops)",
        highlight=False,
    )
    try:
        serve_until_stopped(server)
    finally:
        scheduler.shutdown(wait=False)
        services.close()


# -- keys ---------------------------------------------------------------------------------------------


def _expiry_option(text: str) -> timedelta | None:
    if text.strip().lower() == "never":
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@keys.command("create")
def keys_create(
    description: str = typer.Option("", "--description", "-d", help="What the key is for"),
    expiry: str = typer.Option("90d", help="Lifetime such as 90d or 12h, or 'never'"),
) -> None:
    """Create an API key and print it; it is shown only this once."""
    lifetime = _expiry_option(expiry)
    with _store() as store:
        info, key = store.create_api_key(actor=cli_actor(), description=description, expires_in=lifetime)
    sys.stdout.write(key + "\n")
    err_console.print(
        f"API key {info.id} created (expires {_when(info.expires_at, 'never')}). "
        "Store it now: it cannot be shown again.",
        highlight=False,
    )


def _key_json(info: ApiKeyInfo, now: datetime) -> dict[str, Any]:
    return {
        "id": info.id,
        "description": info.description,
        "status": info.status(now),
        "created": format_rfc3339(info.created_at),
        "createdBy": info.created_by,
        "expires": _when(info.expires_at, "") or None,
        "revoked": _when(info.revoked_at, "") or None,
        "lastUsed": _when(info.last_used_at, "") or None,
    }


@keys.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """List API keys (never their secrets)."""
    with _store() as store:
        now = store.clock()
        items = [_key_json(info, now) for info in store.list_api_keys()]
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("no API keys; create one with `accessbot tailnet keys create`", highlight=False)
        return
    table = Table("id", "status", "description", "created", "expires", "last used")
    for item in items:
        table.add_row(*(str(item[k] or "-") for k in ("id", "status", "description", "created", "expires", "lastUsed")))
    print_table(table)


@keys.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (or the whole key)")) -> None:
    """Revoke an API key; requests made with it fail from now on."""
    with _store() as store:
        revoked = store.revoke_api_key(key_id, actor=cli_actor())
    if revoked:
        console.print(f"API key {key_id} revoked", highlight=False)
    else:
        console.print(f"API key {key_id} was already revoked", highlight=False)


# -- OAuth clients ------------------------------------------------------------------------------------


_SCOPE_HELP = (
    f"Scope to grant (repeatable or space separated); one of: {', '.join(SCOPES)}. "
    f"Default: {' '.join(DEFAULT_CLIENT_SCOPES)}"
)


@clients.command("create")
def clients_create(
    scope: Annotated[list[str] | None, typer.Option("--scope", "-s", help=_SCOPE_HELP)] = None,
    description: str = typer.Option("", "--description", "-d", help="What the client is for"),
) -> None:
    """Create an OAuth client and print its id and secret; the secret is shown only this once."""
    with _store() as store:
        info, secret = store.create_oauth_client(
            actor=cli_actor(), description=description, scopes=scope or DEFAULT_CLIENT_SCOPES
        )
    sys.stdout.write(f"client_id: {info.id}\nclient_secret: {secret}\n")
    err_console.print(
        f"OAuth client {info.id} created with scopes {' '.join(info.scopes)}. "
        "Store the secret now: it cannot be shown again.",
        highlight=False,
    )


def _client_json(info: OAuthClientInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "status": "revoked" if info.revoked_at else "active",
        "scopes": list(info.scopes),
        "description": info.description,
        "created": format_rfc3339(info.created_at),
        "createdBy": info.created_by,
        "revoked": _when(info.revoked_at, "") or None,
    }


@clients.command("list")
def clients_list(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """List OAuth clients (never their secrets)."""
    with _store() as store:
        items = [_client_json(info) for info in store.list_oauth_clients()]
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("no OAuth clients; create one with `accessbot tailnet oauth-clients create`", highlight=False)
        return
    table = Table("id", "status", "scopes", "description", "created")
    for item in items:
        table.add_row(
            str(item["id"]),
            str(item["status"]),
            " ".join(str(scope) for scope in item["scopes"]),
            str(item["description"] or "-"),
            str(item["created"]),
        )
    print_table(table)


@clients.command("revoke")
def clients_revoke(client_id: str = typer.Argument(..., help="The client's id")) -> None:
    """Revoke an OAuth client and every access token it holds."""
    with _store() as store:
        revoked = store.revoke_oauth_client(client_id, actor=cli_actor())
    if revoked:
        console.print(f"OAuth client {client_id} revoked", highlight=False)
    else:
        console.print(f"OAuth client {client_id} was already revoked", highlight=False)


def register(cli: typer.Typer) -> None:
    """Add the ``tailnet`` group to the CLI."""
    cli.add_typer(group, name="tailnet")
