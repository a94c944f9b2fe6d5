"""Tailnet helpers shared by the CLI, the Slack app and the scheduler."""

from __future__ import annotations

from app.tailnet.errors import DeviceNotFound, InvalidRequest
from app.tailnet.models import Device
from app.tailnet.protocol import Tailnet


def match_device(devices: list[Device], ref: str) -> Device:
    """Find the one device whose id, nodeId, name, short name or hostname is ``ref``.

    Ids match exactly; names and hostnames case-insensitively. Raises ``DeviceNotFound`` or, when
    several devices share the name, ``InvalidRequest`` listing their ids.
    """
    ref = ref.strip()
    for device in devices:
        if ref in (device.id, device.node_id):
            return device
    folded = ref.casefold().rstrip(".")
    matches = [
        d for d in devices if folded in (d.name.casefold().rstrip("."), d.short_name.casefold(), d.hostname.casefold())
    ]
    if not matches:
        raise DeviceNotFound(f"no device with id, nodeId, name or hostname {ref!r}")
    if len(matches) > 1:
        listing = ", ".join(f"{d.name} ({d.id})" for d in matches[:10])
        raise InvalidRequest(f"{ref!r} matches {len(matches)} devices: {listing}; use an id instead")
    return matches[0]


def resolve_device(tailnet: Tailnet, ref: str) -> Device:
    """Resolve a device reference: a direct id lookup first, then a name search over all devices."""
    try:
        return tailnet.get_device(ref.strip())
    except DeviceNotFound:
        return match_device(tailnet.list_devices(), ref)
