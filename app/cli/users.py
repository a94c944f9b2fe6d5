"""``accessbot users``: identity binding, i.e. which Tailscale login a Slack user is (link, unlink, list).

A link wins over the config's ``identities`` map and ``identity_domains`` rule, which win over the Slack email
(``app.access.identity``). Links are audited (``User linked`` / ``User unlinked``, actor ``cli:<os user>``). Slack
users are named by member id (``U…``/``W…``): an email would need a Slack lookup, and a link exists precisely
for people whose email is not their login.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from app.access import identity
from app.cli.common import cli_actor, console, fail, opened_services, print_json, print_table
from app.core.timefmt import format_rfc3339

group = typer.Typer(help="Identity binding: Slack users' Tailscale logins (link, unlink, list).", no_args_is_help=True)

SLACK_USER_HELP = "Slack member id (U012AB3CD): in the person's Slack profile, ⋯ then Copy member ID"


@group.command("link")
def link_cmd(
    slack_user: Annotated[str, typer.Argument(help=SLACK_USER_HELP, show_default=False)],
    login: Annotated[str, typer.Argument(help="Tailscale login, e.g. alice@example.com or alice@github")],
) -> None:
    """Bind a Slack user to a Tailscale login: their "own devices", approvals and the audit use it."""
    with opened_services() as rt:
        try:
            previous = identity.link(rt.db, slack_user, login, by=cli_actor().id, at=rt.clock())
        except ValueError as exc:
            fail(str(exc), code=2)
    folded = identity.check_login(login)
    was = f" (was {previous})" if previous and previous != folded else ""
    console.print(f"linked {slack_user.strip()} to {folded}{was}", highlight=False)


@group.command("unlink")
def unlink_cmd(slack_user: Annotated[str, typer.Argument(help=SLACK_USER_HELP, show_default=False)]) -> None:
    """Remove a Slack user's link: their login comes from the config or their Slack email again."""
    with opened_services() as rt:
        try:
            previous = identity.unlink(rt.db, slack_user, by=cli_actor().id, at=rt.clock())
        except ValueError as exc:
            fail(str(exc), code=2)
    if previous is None:
        fail(f"{slack_user.strip()} has no link (`accessbot users list` shows the links)", code=1)
    console.print(f"unlinked {slack_user.strip()} (was {previous})", highlight=False)


@group.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """List the links, then the config's identities and identity_domains (a link wins over both)."""
    with opened_services() as rt:
        links = identity.list_links(rt.db)
        config = rt.config()
    rows = [
        {
            "slack": link.slack_user_id,
            "login": link.login,
            "source": "link",
            "by": link.created_by,
            "at": format_rfc3339(link.created_at),
        }
        for link in links
    ]
    rows += [{"slack": k, "login": v, "source": "config", "by": None, "at": None} for k, v in config.identities.items()]
    rows += [
        {"slack": f"*@{k}", "login": f"*@{v}", "source": "identity_domains", "by": None, "at": None}
        for k, v in config.identity_domains.items()
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no links: every Slack user's Tailscale login is their Slack email", highlight=False)
        return
    table = Table("Slack user", "Tailscale login", "Source", "Linked by", "At")
    for row in rows:
        table.add_row(row["slack"], row["login"], row["source"], row["by"] or "", row["at"] or "")
    print_table(table)


def register(cli: typer.Typer) -> None:
    """Add the ``users`` group to the CLI."""
    cli.add_typer(group, name="users")
