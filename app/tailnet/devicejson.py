"""Convert between the Tailscale API's device JSON and ``Device``.

The shapes follow Tailscale's OpenAPI document (``components/parameters/fields`` and ``components/schemas/Device``,
as stored in tailscale/tailscale-client-go-v2): the default view carries ``DEFAULT_FIELDS``, ``fields=all`` adds
``FIELDS_ALL_ONLY``. A device that lacks a field (added by hand, or imported from a trimmed file) gets a derived
value of the right JSON type, so a client never reads a missing ``authorized`` as ``false``.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timedelta
from typing import Any

from app.core.timefmt import format_rfc3339, parse_rfc3339
from app.tailnet.errors import InvalidRequest
from app.tailnet.models import Device
from app.tailnet.posture_identity import HARDWARE_ADDRESSES_FIELD, raw_hardware_addresses

DEFAULT_FIELDS = (
    "addresses",
    "id",
    "nodeId",
    "user",
    "name",
    "hostname",
    "clientVersion",
    "updateAvailable",
    "os",
    "created",
    "connectedToControl",
    "lastSeen",
    "keyExpiryDisabled",
    "expires",
    "authorized",
    "isExternal",
    "machineKey",
    "nodeKey",
    "blocksIncomingConnections",
    "tailnetLockKey",
    "tailnetLockError",
    "tags",
    "isEphemeral",
)
"""The fields of Tailscale's default device view (OpenAPI ``components/parameters/fields``)."""

FIELDS_ALL_ONLY = (
    "enabledRoutes",
    "advertisedRoutes",
    "clientConnectivity",
    "postureIdentity",
    "sshEnabled",
    "distro",
    "multipleConnections",
)
"""Device fields the API returns only with ``fields=all``."""

KEY_EXPIRY = timedelta(days=180)
"""Tailscale's default node key expiry: a device added by hand expires 180 days after it was created."""

ZERO_TIME_TEXT = "0001-01-01T00:00:00Z"
"""What Tailscale sends as ``expires`` of a device whose key never expires."""

_EMPTY_CONNECTIVITY: dict[str, Any] = {
    "endpoints": [],
    "mappingVariesByDestIP": False,
    "latency": {},
    "clientSupports": {"hairPinning": None, "ipv6": False, "pcp": False, "pmp": False, "udp": False, "upnp": False},
}


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
    tags = data.get("tags") or ()
    if isinstance(tags, str):  # one tag written as a string: never split it into characters
        tags = (tags,)
    return Device(
        id=str(data["id"]),
        node_id=str(data["nodeId"]),
        name=name,
        hostname=str(data.get("hostname") or name.split(".", 1)[0]),
        user=str(data.get("user") or ""),
        os=str(data.get("os") or ""),
        tags=tuple(str(t) for t in tags),
        addresses=tuple(str(a) for a in data.get("addresses") or ()),
        last_seen=_time(data.get("lastSeen")),
        serial_numbers=tuple(str(s) for s in serials if s is not None),
        posture_identity_disabled=bool(identity.get("disabled")) if isinstance(identity, dict) else False,
        client_version=str(data.get("clientVersion") or ""),
        raw=dict(data),
    )


def derived_key(prefix: str, node_id: str) -> str:
    """A stable key in Tailscale's format (``mkey:``/``nodekey:``/``nlpub:`` + 64 hex) for a device that has none.

    Derived from the nodeId, so every read of the same device shows the same key; it is not a secret (Tailscale
    shows these public keys to every API reader)."""
    return f"{prefix}:{hashlib.sha256(f'{prefix}:{node_id}'.encode()).hexdigest()}"


def defaults(device: Device, created: datetime | None) -> dict[str, Any]:
    """Values of the default-view fields for a device whose JSON lacks them (added by hand, or trimmed).

    ``authorized`` (the store only holds devices of the tailnet), key expiry disabled for tagged devices (as
    Tailscale does), ``expires`` 180 days after ``created`` unless the key never expires."""
    key_expiry_disabled = bool(device.raw.get("keyExpiryDisabled", bool(device.tags)))
    expires = ZERO_TIME_TEXT if key_expiry_disabled or created is None else format_rfc3339(created + KEY_EXPIRY)
    return {
        "updateAvailable": False,
        "created": format_rfc3339(created) if created is not None else "",
        "connectedToControl": False,
        "keyExpiryDisabled": key_expiry_disabled,
        "expires": expires,
        "authorized": True,
        "isExternal": False,
        "machineKey": derived_key("mkey", device.node_id),
        "nodeKey": derived_key("nodekey", device.node_id),
        "blocksIncomingConnections": False,
        "tailnetLockKey": derived_key("nlpub", device.node_id),
        "tailnetLockError": "",
        "isEphemeral": False,
    }


def _created(device: Device) -> datetime | None:
    return _time(device.raw.get("created"))


NODE_ATTRIBUTE_SOURCES = ("osVersion", "tsAutoUpdate", "autoUpdate", "tsStateEncrypted")
"""Keys an import file may carry beside Tailscale's device fields, only as the source of ``node:`` attributes
(``node_attributes``); they are not device fields, so the API never sends them."""


def device_to_api(device: Device, *, fields_all: bool) -> dict[str, Any]:
    """Render a ``Device`` in the API's shape: the default view is exactly ``DEFAULT_FIELDS`` (``lastSeen``
    omitted when never seen, ``tags`` when untagged, as Tailscale does); ``fields=all`` adds ``FIELDS_ALL_ONLY``
    and any other device field an import carried (a newer Tailscale field is passed on, not lost).

    Values kept from an imported device's JSON win over derived defaults (an imported ``expires`` keeps its
    milliseconds)."""
    out: dict[str, Any] = defaults(device, _created(device))
    out.update({k: v for k, v in device.raw.items() if k not in NODE_ATTRIBUTE_SOURCES})
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
    else:
        out.pop("lastSeen", None)
    if device.tags:
        out["tags"] = list(device.tags)
    else:
        out.pop("tags", None)
    if not fields_all:
        return {k: v for k, v in out.items() if k in DEFAULT_FIELDS}
    if device.posture_identity_disabled:
        out["postureIdentity"] = {"disabled": True}
    else:
        hardware = raw_hardware_addresses(device.raw.get("postureIdentity"))
        out["postureIdentity"] = {
            "serialNumbers": list(device.serial_numbers),
            **({HARDWARE_ADDRESSES_FIELD: hardware} if hardware else {}),
            "disabled": False,
        }
    out.setdefault("enabledRoutes", [])
    out.setdefault("advertisedRoutes", [])
    out.setdefault("clientConnectivity", copy.deepcopy(_EMPTY_CONNECTIVITY))
    out.setdefault("sshEnabled", False)
    return out
