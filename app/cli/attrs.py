"""``accessbot attrs``: read, set and delete a device's posture attributes (either adapter)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from app.cli.common import cli_actor, console, fail, opened_services, print_json, print_table
from app.core.timefmt import format_duration, format_rfc3339, parse_when
from app.tailnet import rules
from app.tailnet.errors import RuleViolation
from app.tailnet.models import AttributeSet, AttributeValue
from app.tailnet.protocol import Tailnet
from app.tailnet.service import resolve_device

group = typer.Typer(help="Posture attributes of a device: get, set, delete.", no_args_is_help=True)

DEVICE_HELP = "Device id, nodeId, name or hostname"
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+)")
_INTEGER = re.compile(r"[+-]?(0|[1-9]\d*)")
_NUMBER_LIKE = re.compile(r"[+-]?(\d[\d_]*(\.\d*)?([eE][+-]?\d+)?|0[xXoObB][\da-fA-F_]+|\.\d+[eE][+-]?\d+)")
"""Text a person most likely meant as a number: leading zeros, exponents, hex/octal/binary, digit groups."""
MAX_EXPIRY = timedelta(days=365)
"""The furthest ``attrs set --expiry`` accepts: Tailscale sets no maximum, but an expiry years ahead is a typo
(``99999d``) or an attribute that should have none."""


def purge_expired(tailnet: Tailnet) -> None:
    """Purge (and audit) expired attributes now, when the adapter supports it."""
    purge = getattr(tailnet, "purge_expired", None)
    if callable(purge):
        purge()


def format_value(value: AttributeValue) -> str:
    """A value as typed on the command line: ``true``, ``42``, ``text``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_expiry(expiry: datetime, now: datetime) -> str:
    """``2026-11-21T12:01:00Z (in 1m)``; ``(expired)`` once it has passed."""
    left = expiry - now
    when = f"in {format_duration(left)}" if left.total_seconds() >= 1 else "expired"
    return f"{format_rfc3339(expiry)} ({when})"


def parse_value(text: str, *, force_string: bool) -> AttributeValue:
    """CLI value syntax, strictly: ``true``/``false`` in any case (``TRUE``, ``True``) are booleans, a plain
    integer (``42``, ``-5``, no leading zero) is a number, other text is a string; text that looks like a number
    but is not a plain integer (``1.5``, ``007``, ``1e3``, ``0x1f``, ``1_000``) is refused rather than silently
    stored as text. ``--string`` stores the text as given."""
    if force_string:
        return text
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        try:
            rules.validate_value(float(text))
        except RuleViolation as exc:
            fail(f"{exc.message}; pass --string to store {text!r} as text")
    if _NUMBER_LIKE.fullmatch(text):
        fail(
            f"{text!r} is not a plain integer (no leading zeros, exponents, hex or underscores); "
            f"write it as one, or pass --string to store it as text"
        )
    return text


def parse_expiry(text: str, now: datetime) -> datetime:
    """``--expiry``: a duration from now or an RFC 3339 time, at most ``MAX_EXPIRY`` ahead (one line otherwise)."""
    try:
        expires = parse_when(text, now)
    except ValueError as exc:
        fail(f"--expiry: {exc}")
    except OverflowError:
        expires = None
    if expires is None or expires - now > MAX_EXPIRY:
        fail(
            f"--expiry {text} is more than {MAX_EXPIRY.days} days ahead; access is meant to expire: choose a "
            "shorter time, or leave --expiry out for an attribute that never expires"
        )
    return expires


def _table(attributes: AttributeSet, now: datetime) -> Table:
    table = Table("key", "value", "type", "expiry")
    for key, value in attributes.attributes.items():
        expiry = attributes.expiries.get(key)
        table.add_row(
            Text(key),
            Text(format_value(value)),
            rules.value_type(value),
            Text(format_expiry(expiry, now) if expiry else "never"),
        )
    return table


@group.command("get")
def get_cmd(
    device_ref: Annotated[str, typer.Argument(metavar="DEVICE", help=DEVICE_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"attributes": ..., "expiries": ...} as the API does')
    ] = False,
) -> None:
    """Show a device's live attributes and their expiries."""
    with opened_services() as rt:
        purge_expired(rt.tailnet)
        device = resolve_device(rt.tailnet, device_ref)
        attributes = rt.tailnet.get_attributes(device.id)
        now = rt.clock()
    if as_json:
        print_json(attributes.to_api())
        return
    if not attributes.attributes:
        console.print(f"{device.name} ({device.id}) has no attributes", markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"{device.name} ({device.id})", markup=False, highlight=False, soft_wrap=True)
    print_table(_table(attributes, now))


@group.command("set")
def set_cmd(
    device_ref: Annotated[str, typer.Argument(metavar="DEVICE", help=DEVICE_HELP)],
    key: Annotated[str, typer.Argument(metavar="KEY", help="Attribute key, e.g. custom:prodAccess")],
    value: Annotated[
        str, typer.Argument(metavar="VALUE", help="true/false (any case) = boolean, an integer = number, else string")
    ],
    expiry: Annotated[
        str | None,
        typer.Option("--expiry", help="When it expires: a duration (30m, 2h, 1d) or an RFC 3339 time"),
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Recorded in the audit log")] = None,
    force_string: Annotated[bool, typer.Option("--string", help="Store VALUE as a string as given")] = False,
) -> None:
    """Set one attribute on a device (put -- before a negative number: KEY -- -5)."""
    parsed = parse_value(value, force_string=force_string)
    with opened_services() as rt:
        now = rt.clock()
        expires = parse_expiry(expiry, now) if expiry is not None else None
        purge_expired(rt.tailnet)
        device = resolve_device(rt.tailnet, device_ref)
        rt.tailnet.set_attribute(device.id, key, parsed, actor=cli_actor(), expiry=expires, comment=comment)
    until = f", expires {format_expiry(expires, now)}" if expires else ""
    console.print(
        f"set {key} = {format_value(parsed)} ({rules.value_type(parsed)}) on {device.name} ({device.id}){until}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@group.command("delete")
def delete_cmd(
    device_ref: Annotated[str, typer.Argument(metavar="DEVICE", help=DEVICE_HELP)],
    key: Annotated[str, typer.Argument(metavar="KEY", help="Attribute key, e.g. custom:prodAccess")],
    comment: Annotated[str | None, typer.Option("--comment", help="Recorded in the audit log")] = None,
) -> None:
    """Delete one attribute from a device."""
    with opened_services() as rt:
        purge_expired(rt.tailnet)
        device = resolve_device(rt.tailnet, device_ref)
        rt.tailnet.delete_attribute(device.id, key, actor=cli_actor(), comment=comment)
    console.print(f"deleted {key} from {device.name} ({device.id})", markup=False, highlight=False, soft_wrap=True)


def register(cli: typer.Typer) -> None:
    """Add the ``attrs`` group to the CLI."""
    cli.add_typer(group, name="attrs")
