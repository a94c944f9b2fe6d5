"""``accessbot devices``: devices of the built-in tailnet (add, import, list, remove).

Bad input is refused with one line naming the field (``app.tailnet.device_input``); the CLI group prints a
``TailnetError`` as ``error: <message>`` and exits 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import IntegrityError

from app.cli.common import cli_actor, console, fail, opened_services, print_json, print_table
from app.core.timefmt import format_rfc3339
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.device_input import KNOWN_OS, check_import_item
from app.tailnet.devicejson import device_from_api, device_to_api
from app.tailnet.errors import InvalidRequest
from app.tailnet.models import Device
from app.tailnet.service import resolve_device

group = typer.Typer(help="Devices of the built-in tailnet: add, import, list, remove.", no_args_is_help=True)


@contextmanager
def _builtin(command: str) -> Iterator[BuiltinTailnet]:
    """The built-in tailnet; with the Tailscale adapter configured, explain and exit non-zero."""
    with opened_services() as rt:
        if rt.uses_tailscale:
            fail(
                f"`devices {command}` works only with the built-in tailnet: Tailscale credentials are "
                "configured, so devices come from the real tailnet (manage them in Tailscale); "
                "`devices list` shows them"
            )
        if not isinstance(rt.tailnet, BuiltinTailnet):
            fail(f"`devices {command}` works only with the built-in tailnet")
        yield rt.tailnet


@group.command("add")
def add_cmd(
    name: Annotated[
        str,
        typer.Option("--name", help="Device name: laptop (becomes laptop.<tailnet name>) or a full MagicDNS name"),
    ],
    user: Annotated[str, typer.Option("--user", help="Owner's login email (a tagged device: its creator's)")],
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="Hostname (default: first label of the name)")
    ] = None,
    os: Annotated[
        str, typer.Option("--os", help="Operating system: " + ", ".join(KNOWN_OS) + " (any case, e.g. macOS)")
    ] = "",
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag such as tag:server (repeatable)")] = None,
    serials: Annotated[list[str] | None, typer.Option("--serial", help="A hardware serial number (repeatable)")] = None,
    addresses: Annotated[
        list[str] | None,
        typer.Option("--address", help="A Tailscale address in 100.64.0.0/10 or fd7a:115c:a1e0::/48 (repeatable)"),
    ] = None,
    client_version: Annotated[
        str, typer.Option("--client-version", help="Tailscale client version, e.g. 1.76.1 (node:tsVersion)")
    ] = "",
    os_version: Annotated[str, typer.Option("--os-version", help="OS version, e.g. 14.5 (node:osVersion)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the device in the API's shape")] = False,
) -> None:
    """Add a device to the built-in tailnet; prints its generated id and nodeId."""
    with _builtin("add") as tailnet:
        device = tailnet.add_device(
            name=name,
            user=user,
            hostname=hostname,
            os=os,
            tags=tags or (),
            serial_numbers=serials or (),
            addresses=addresses or (),
            client_version=client_version.strip(),
            os_version=os_version,
            actor=cli_actor(),
        )
    if as_json:
        print_json(device_to_api(device, fields_all=True))
        return
    console.print(f"added device {device.name}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"id:     {device.id}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"nodeId: {device.node_id}", markup=False, highlight=False, soft_wrap=True)


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{source}: cannot read file: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"{source}: not UTF-8 text")


def load_device_file(source: str, text: str) -> list[dict[str, Any]]:
    """Parse and check a device list (``{"devices": [...]}`` or a bare list); fail naming file and index."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    if isinstance(data, dict):
        if "devices" not in data:
            fail(f'{source}: expected {{"devices": [...]}} or a list of devices; the object has no "devices"')
        data = data["devices"]
    if not isinstance(data, list):
        fail(f"{source}: expected a list of devices, got {type(data).__name__}")
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(data):
        try:
            check_import_item(item)
            device = device_from_api(item)
        except InvalidRequest as exc:
            fail(f"{source}: device at index {index}: {exc.message}")
        for field, value in (("id", device.id), ("nodeId", device.node_id), ("name", device.name.casefold())):
            first = seen.setdefault((field, value), index)
            if first != index:
                shown = device.name if field == "name" else value
                fail(f"{source}: devices at index {first} and {index} have the same {field} {shown!r}")
    return data


@group.command("import")
def import_cmd(
    source: Annotated[
        str,
        typer.Argument(metavar="FILE", help="JSON of GET /api/v2/tailnet/-/devices?fields=all; - = stdin"),
    ],
) -> None:
    """Create or update devices from the Tailscale API's device list JSON."""
    name = "<stdin>" if source == "-" else source
    with _builtin("import") as tailnet:
        devices = load_device_file(name, _read_source(source))
        try:
            created, updated = tailnet.import_devices(devices, actor=cli_actor())
        except IntegrityError:
            fail(f"{name}: a device's id and nodeId belong to two different existing devices; nothing was imported")
        except InvalidRequest as exc:
            fail(f"{name}: {exc.message}")
    console.print(f"{created} created, {updated} updated", highlight=False)


def _device_row(device: Device) -> list[Text]:
    cells = [
        device.name,
        device.id,
        device.node_id,
        device.user,
        device.os,
        ", ".join(device.tags),
        ", ".join(device.serial_numbers),
        format_rfc3339(device.last_seen) if device.last_seen else "",
    ]
    return [Text(cell) for cell in cells]


@group.command("list")
def list_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"devices": [...]} as the API does with fields=all')
    ] = False,
) -> None:
    """List the devices of the tailnet (built-in or Tailscale)."""
    with opened_services() as rt:
        devices = rt.tailnet.list_devices()
    if as_json:
        print_json({"devices": [device_to_api(d, fields_all=True) for d in devices]})
        return
    if not devices:
        console.print("no devices", highlight=False)
        return
    table = Table("name", "id", "nodeId", "user", "os", "tags", "serials", "last seen")
    for device in devices:
        table.add_row(*_device_row(device))
    print_table(table)


@group.command("remove")
def remove_cmd(
    device_ref: Annotated[str, typer.Argument(metavar="DEVICE", help="The device's id, nodeId or unique name")],
) -> None:
    """Remove a device and its attributes from the built-in tailnet (each removal audited)."""
    with _builtin("remove") as tailnet:
        device = resolve_device(tailnet, device_ref)
        attributes = tailnet.get_attributes(device.id).attributes
        removed = tailnet.remove_device(device.id, actor=cli_actor())
    custom = sorted(key for key in attributes if not key.startswith("node:"))
    console.print(f"removed device {removed.name} ({removed.id})", markup=False, highlight=False, soft_wrap=True)
    if custom:
        console.print(f"removed attributes: {', '.join(custom)}", markup=False, highlight=False, soft_wrap=True)


def register(cli: typer.Typer) -> None:
    """Add the ``devices`` group to the CLI."""
    cli.add_typer(group, name="devices")
