"""Convert between the Tailscale API's device JSON and ``Device``."""

from __future__ import annotations

from typing import Any

from app.core.timefmt import format_rfc3339, parse_rfc3339
from app.tailnet.errors import InvalidRequest
from app.tailnet.models import Device

FIELDS_ALL_ONLY = ("enabledRoutes", "advertisedRoutes", "clientConnectivity", "postureIdentity")
"""Device fields the API returns only with ``fields=all``."""


def _time(value: Any) -> Any:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = parse_rfc3339(value)
    except ValueError:
        return None
    return None if parsed.year == 1 else parsed


def device_from_api(data: Any) -> Device:
    """Build a ``Device`` from one element of ``GET /tailnet/-/devices?fields=all``."""
    if not isinstance(data, dict):
        raise InvalidRequest("a device must be a JSON object")
    missing = [field for field in ("id", "nodeId") if not data.get(field)]
    if missing:
        raise InvalidRequest(f"device is missing {', '.join(missing)}")
    identity = data.get("postureIdentity") or {}
    serials = identity.get("serialNumbers") or [] if isinstance(identity, dict) else []
    name = str(data.get("name") or data.get("hostname") or data["nodeId"])
    return Device(
        id=str(data["id"]),
        node_id=str(data["nodeId"]),
        name=name,
        hostname=str(data.get("hostname") or name.split(".", 1)[0]),
        user=str(data.get("user") or ""),
        os=str(data.get("os") or ""),
        tags=tuple(str(t) for t in data.get("tags") or ()),
        addresses=tuple(str(a) for a in data.get("addresses") or ()),
        last_seen=_time(data.get("lastSeen")),
        serial_numbers=tuple(str(s) for s in serials if s is not None),
        posture_identity_disabled=bool(identity.get("disabled")) if isinstance(identity, dict) else False,
        client_version=str(data.get("clientVersion") or ""),
        raw=dict(data),
    )


def device_to_api(device: Device, *, fields_all: bool) -> dict[str, Any]:
    """Render a ``Device`` in the API's shape; the ``fields=all``-only fields only when asked."""
    out: dict[str, Any] = dict(device.raw)
    out.update(
        {
            "addresses": list(device.addresses),
            "id": device.id,
            "nodeId": device.node_id,
            "user": device.user,
            "name": device.name,
            "hostname": device.hostname,
            "clientVersion": device.client_version,
            "os": device.os,
        }
    )
    if device.last_seen is not None:
        out["lastSeen"] = format_rfc3339(device.last_seen)
    if device.tags:
        out["tags"] = list(device.tags)
    else:
        out.pop("tags", None)
    if device.posture_identity_disabled:
        out["postureIdentity"] = {"disabled": True}
    else:
        out["postureIdentity"] = {"serialNumbers": list(device.serial_numbers), "disabled": False}
    if not fields_all:
        for field in FIELDS_ALL_ONLY:
            out.pop(field, None)
    return out
