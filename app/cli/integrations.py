"""``accessbot integrations``: connect, change, remove and list EDR vendor accounts (Huntress, SentinelOne)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from app.cli import common
from app.cli.common import cli_actor, console, fail, opened_services, print_json, print_table
from app.core.crypto import CipherError
from app.core.timefmt import format_duration, format_rfc3339
from app.vendors.base import CredentialField, VendorAuthError, VendorError, VendorSpec
from app.vendors.integrations import (
    Integration,
    IntegrationError,
    Integrations,
    parse_max_agent_age,
    validate,
    vendor_spec,
)
from app.vendors.status import status_of

if TYPE_CHECKING:
    from app.bootstrap import Services

group = typer.Typer(
    help="EDR and MDM posture integrations (ten vendors): connect, change, remove, list, vendors.", no_args_is_help=True
)

FLAGS: dict[str, str] = {
    "--api-key": "api_key",
    "--api-secret": "api_secret",
    "--org-id": "organization_id",
    "--base-url": "base_url",
    "--url": "url",
    "--api-token": "api_token",
}
"""Friendly flags → field names; any field can also be given as ``--set NAME=VALUE``."""

PROMPT_VALUE = "-"


def sync_note(vendor: str) -> str:
    """What happens to the requested sync: the scheduler of a running ``serve``/``worker`` checks every minute."""
    return (
        f"sync requested: a running 'accessbot serve' or 'accessbot worker' starts it within about a minute; "
        f"to sync now, run: accessbot sync {vendor}"
    )


VENDOR_HELP = "Vendor id: huntress or sentinelone (all: accessbot integrations vendors)"
FIELDS_HELP = (
    "Fields come from the flags below or --set NAME=VALUE (the fields of each vendor: 'accessbot integrations "
    f"vendors'). A value of {PROMPT_VALUE} asks for it at a prompt, with hidden input for secrets (or reads a line "
    "of standard input when that is not a terminal), so secrets need not land in shell history."
)

ADD_HELP = (
    f"Connect a vendor account and request a sync.\n\n{FIELDS_HELP}\n\n"
    "A field not given is read from the environment variable ACCESSBOT_<VENDOR>_<FIELD> "
    "(e.g. ACCESSBOT_HUNTRESS_API_SECRET), else asked for like a value of -.\n\n"
    "The credentials are checked first by fetching one agent from the vendor; nothing is stored when the vendor "
    "refuses them or cannot be reached (--no-verify stores them unchecked, for a set-up without network access)."
)

UPDATE_HELP = (
    f"Change some fields of a connected vendor account and request an immediate sync.\n\n{FIELDS_HELP}\n\n"
    "Only the fields given change; an empty value (--org-id '') clears an optional field. Changing any value "
    "lifts the pause that follows an authentication failure.\n\n"
    "--max-agent-age AGE (e.g. 7d, 12h; 'off' by default): an agent not seen within AGE writes none of its "
    "attributes, only <namespace>:stale = true, until it checks in again."
)

ApiKey = Annotated[str | None, typer.Option("--api-key", help="Huntress API key (field api_key)", show_default=False)]
ApiSecret = Annotated[
    str | None, typer.Option("--api-secret", help="Huntress API secret (field api_secret)", show_default=False)
]
OrgId = Annotated[
    str | None,
    typer.Option("--org-id", help="Huntress: only sync this organization (field organization_id)", show_default=False),
]
BaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="Huntress API base URL (field base_url)", show_default=False)
]
Url = Annotated[
    str | None,
    typer.Option("--url", help="SentinelOne console URL, e.g. https://example.sentinelone.net", show_default=False),
]
ApiToken = Annotated[
    str | None, typer.Option("--api-token", help="SentinelOne API token (field api_token)", show_default=False)
]
NoVerify = Annotated[
    bool,
    typer.Option("--no-verify", help="Store the credentials without asking the vendor first (offline set-ups)"),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="NAME=VALUE", help="Any field of the vendor; repeatable", show_default=False),
]
MaxAgentAge = Annotated[
    str | None,
    typer.Option(
        "--max-agent-age",
        metavar="AGE",
        help="Agents not seen within AGE (7d, 12h; at least 1h) write only <namespace>:stale; 'off' turns it off",
        show_default=False,
    ),
]


@contextmanager
def _errors() -> Iterator[None]:
    """Integration and decryption errors → one ``error:`` line."""
    try:
        yield
    except (IntegrationError, CipherError) as exc:
        fail(exc.message)


def _service(rt: Services) -> Integrations:
    return rt.integrations


def _flag(name: str) -> str:
    """How a field is given on the command line."""
    return next((flag for flag, field in FLAGS.items() if field == name), f"--set {name}=VALUE")


def env_var(spec: VendorSpec, spec_field: CredentialField) -> str:
    """The environment variable ``add`` reads an omitted field from: ``ACCESSBOT_HUNTRESS_API_SECRET``."""
    return f"ACCESSBOT_{spec.id}_{spec_field.name}".upper()


def _collect(spec: VendorSpec, flags: dict[str, str | None], sets: list[str] | None) -> dict[str, str]:
    """The values given on the command line, by field name; ``-`` values are asked for at a prompt."""
    fields = {f.name: f for f in spec.fields}
    known = ", ".join(f"{_flag(n)}" for n in fields)
    given: dict[str, tuple[str, str]] = {}  # field → (how it was given, value)

    def put(name: str, how: str, value: str) -> None:
        if name not in fields:
            fail(f"{how} does not apply to {spec.label}; its fields: {known}")
        if name in given:
            fail(f"field {name!r} is given twice ({given[name][0]} and {how})")
        given[name] = (how, value)

    for flag, value in flags.items():
        if value is not None:
            put(FLAGS[flag], flag, value)
    for item in sets or ():
        name, sep, value = item.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name:
            fail("--set expects NAME=VALUE, e.g. --set organization_id=42")
        put(name, f"--set {name}", value)
    values: dict[str, str] = {}
    for name, (_how, value) in given.items():
        values[name] = _ask(spec, fields[name]) if value.strip() == PROMPT_VALUE else value
    return values


def _interactive() -> bool:
    """Whether prompts can be shown (standard input is a terminal)."""
    return sys.stdin.isatty()


def _ask(spec: VendorSpec, spec_field: CredentialField) -> str:
    """One field from a prompt (hidden input for secrets), or a line of standard input when it is not a terminal."""
    missing = (
        f"missing {_flag(spec_field.name)} ({spec_field.label or spec_field.name}) for {spec.label}: "
        f"give it, set {env_var(spec, spec_field)}, or run in a terminal to be asked"
    )
    if not _interactive():
        line = sys.stdin.readline()
        if not line.strip():
            fail(missing)
        return line.rstrip("\r\n")
    try:
        value = typer.prompt(f"{spec.label} {spec_field.label or spec_field.name}", hide_input=spec_field.secret)
    except typer.Abort:
        fail(missing)
    return str(value)


def _flags(**values: str | None) -> dict[str, str | None]:
    return {f"--{name.replace('_', '-')}": value for name, value in values.items()}


def _when(moment: datetime | None) -> str:
    return format_rfc3339(moment) if moment is not None else "-"


def _describe(integration: Integration) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in integration.settings.items())
    secrets = ", ".join(integration.secret_fields) or "none"
    return f"{integration.label} ({integration.vendor}): {settings + '; ' if settings else ''}secrets set: {secrets}"


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _verify(spec: VendorSpec, values: dict[str, str]) -> int:
    """Fetch one agent with ``values`` before they are stored; one ``error:`` line (nothing stored) if that fails."""
    clean = {name: value for name, value in validate(spec, values, partial=False).items() if value is not None}
    try:
        client = spec.build(clean)
    except ValueError as exc:
        fail(f"{spec.label}: {exc}; nothing stored")
    offline = "or pass --no-verify to store them unchecked"
    try:
        return client.verify()
    except VendorAuthError as exc:
        fail(f"{exc.message}; nothing stored (check the {spec.label} credentials, {offline})")
    except VendorError as exc:
        fail(f"could not check the credentials: {exc.message}; nothing stored (check the URL and network, {offline})")
    finally:
        client.close()


@group.command("add", help=ADD_HELP)
def add_cmd(
    vendor: Annotated[str, typer.Argument(metavar="VENDOR", help=VENDOR_HELP)],
    api_key: ApiKey = None,
    api_secret: ApiSecret = None,
    org_id: OrgId = None,
    base_url: BaseUrl = None,
    url: Url = None,
    api_token: ApiToken = None,
    sets: Sets = None,
    no_verify: NoVerify = False,
) -> None:
    """Connect a vendor account (its credentials checked with the vendor first) and request a sync."""
    with _errors():
        spec = vendor_spec(vendor, common.vendors())
        flags = _flags(
            api_key=api_key, api_secret=api_secret, org_id=org_id, base_url=base_url, url=url, api_token=api_token
        )
        with opened_services() as rt:
            service = _service(rt)
            if any(i.vendor == spec.id for i in service.list()):
                fail(f"{spec.label} is already connected; change it with: accessbot integrations update {spec.id}")
            values = _collect(spec, flags, sets)
            for spec_field in spec.fields:
                if spec_field.name in values:
                    continue
                from_env = os.environ.get(env_var(spec, spec_field), "").strip()
                if from_env:
                    values[spec_field.name] = from_env
                elif spec_field.required:
                    values[spec_field.name] = _ask(spec, spec_field)
            listed = None if no_verify else _verify(spec, values)
            integration = service.add(spec.id, values, actor=cli_actor().id)
    _say(f"connected {_describe(integration)}")
    if listed is None:
        _say("credentials not checked (--no-verify): 'accessbot doctor' checks them")
    else:
        _say(f"{spec.label} accepted the credentials ({'agents are listed' if listed else 'no agents listed yet'})")
    _say(sync_note(spec.id))


@group.command("update", help=UPDATE_HELP)
def update_cmd(
    vendor: Annotated[str, typer.Argument(metavar="VENDOR", help=VENDOR_HELP)],
    api_key: ApiKey = None,
    api_secret: ApiSecret = None,
    org_id: OrgId = None,
    base_url: BaseUrl = None,
    url: Url = None,
    api_token: ApiToken = None,
    sets: Sets = None,
    max_agent_age: MaxAgentAge = None,
) -> None:
    """Change some fields of a connected vendor account and request an immediate sync."""
    with _errors():
        spec = vendor_spec(vendor, common.vendors())
        flags = _flags(
            api_key=api_key, api_secret=api_secret, org_id=org_id, base_url=base_url, url=url, api_token=api_token
        )
        with opened_services() as rt:
            service = _service(rt)
            before = service.get(spec.id)
            values = _collect(spec, flags, sets)
            if not values and max_agent_age is None:
                given = ", ".join([*(_flag(f.name) for f in spec.fields), "--max-agent-age"])
                fail(f"nothing to update: give at least one of {given}")
            age = parse_max_agent_age(max_agent_age) if max_agent_age is not None else None
            integration = service.update(spec.id, values, actor=cli_actor().id) if values else before
            if max_agent_age is not None:
                integration = service.set_max_agent_age(spec.id, age, actor=cli_actor().id)
            now = rt.clock()
    _say(f"updated {_describe(integration)}")
    if max_agent_age is not None:
        _say(
            f"max agent age {format_duration(age)}: agents not seen within it write only {spec.namespace}:stale"
            if age is not None
            else "max agent age off: every matched agent writes its posture"
        )
    if before.paused(now) and not integration.paused(now):
        _say("the pause after an authentication failure is lifted")
    _say(sync_note(spec.id))


@group.command("remove")
def remove_cmd(
    vendor: Annotated[str, typer.Argument(metavar="VENDOR", help=VENDOR_HELP)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Disconnect a vendor account: its attributes are removed from devices, then its settings and credentials."""
    with _errors(), opened_services() as rt:
        service = _service(rt)
        integration = service.get(vendor)
        if not yes:
            try:
                confirmed = typer.confirm(f"Remove the {integration.label} integration?", default=False)
            except typer.Abort:
                fail("not removed: pass --yes to remove without a terminal to confirm in")
            if not confirmed:
                fail("not removed")
        removed = rt.sync.disconnect(integration.vendor, actor=cli_actor().id)
    _say(
        f"removed the {integration.label} integration ({integration.vendor}); {removed} attributes removed from devices"
    )


def _result(integration: Integration) -> str:
    if integration.last_result is None:
        return "never synced"
    finished = integration.last_sync_finished_at
    text = integration.last_result + (f" at {format_rfc3339(finished)}" if finished else "")
    return text + (f": {integration.last_error}" if integration.last_error else "")


@group.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON: every integration's settings and state")] = False,
) -> None:
    """List connected vendor accounts (never their secrets)."""
    with _errors(), opened_services() as rt:
        integrations = _service(rt).list()
        now = rt.clock()
    if as_json:
        print_json([integration.to_json() for integration in integrations])
        return
    if not integrations:
        _say("no integrations; connect one with: accessbot integrations add VENDOR")
        return
    table = Table("vendor", "label", "connected since", "paused until", "last result")
    for integration in integrations:
        paused = _when(integration.paused_until) if integration.paused(now) else "-"
        table.add_row(
            Text(integration.vendor),
            Text(integration.label),
            Text(_when(integration.created_at)),
            Text(paused),
            Text(_result(integration)),
        )
    print_table(table)


@group.command("vendors")
def vendors_cmd() -> None:
    """The vendors accessbot can connect to and their fields."""
    table = Table("vendor", "label", "field", "flag", "secret", "required", "help")
    for spec in common.vendors().values():
        for spec_field in spec.fields:
            table.add_row(
                Text(spec.id),
                Text(spec.label),
                Text(spec_field.name),
                Text(_flag(spec_field.name)),
                "yes" if spec_field.secret else "no",
                "yes" if spec_field.required else "no",
                Text(spec_field.help),
            )
    print_table(table)


@group.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON: one status object per integration")] = False,
) -> None:
    """Last sync, matches, agents without serial, devices without identity, duplicates, errors, pauses."""
    with _errors(), opened_services() as rt:
        now = rt.clock()
        statuses = [status_of(i, now) for i in _service(rt).list()]
    if as_json:
        typer.echo(json.dumps(statuses, indent=2))
        return
    if not statuses:
        _say("no EDR integration is connected; add one with `accessbot integrations add`")
        return
    for status in statuses:
        console.print(f"[bold]{status['label']}[/] ({status['state']}): {status['headline']}", highlight=False)
        console.print(
            f"  devices synced {status['devices_synced']} · agents without serial {status['agents_without_serial']}"
            f" · devices without identity {status['devices_without_identity']} · duplicate serials resolved "
            f"{status['duplicate_serials_resolved']}",
            highlight=False,
        )
        console.print(f"  {status['matching']}", highlight=False)
        if status["last_error"]:
            console.print(f"  [red]last error:[/] {status['last_error']}", highlight=False)
        if status["paused_until"]:
            console.print(
                f"  [yellow]paused until {status['paused_until']}[/]: {status['pause_reason']}", highlight=False
            )


def register(cli: typer.Typer) -> None:
    """Add the ``integrations`` group to the CLI."""
    cli.add_typer(group, name="integrations")
