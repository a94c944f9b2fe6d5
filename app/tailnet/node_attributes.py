"""The read-only ``node:`` attributes the built-in tailnet derives from a device record.

Like Tailscale's ``GET /device/{id}/attributes``, the built-in store reports ``node:os``, ``node:osVersion``,
``node:tsVersion``, ``node:tsReleaseTrack`` and ``node:tsAutoUpdate`` (and ``node:tsStateEncrypted``) where the
device record has the data: ``os`` and ``clientVersion`` of the device, and ``osVersion``, ``autoUpdate`` /
``tsAutoUpdate`` and ``tsStateEncrypted`` kept from an imported device's JSON. Nobody can write them.
"""

from __future__ import annotations

from app.tailnet.models import AttributeValue, Device
from app.tailnet.versions import parse_ts_version, release_track

_OS_NAMES = {"macos": "macos", "macosx": "macos", "darwin": "macos", "ios": "ios", "ipados": "ios", "tvos": "ios"}


def node_os(os: str) -> str | None:
    """Tailscale's ``node:os`` spelling of a device's OS (``macOS`` → ``macos``)."""
    folded = os.strip().lower().replace(" ", "")
    return _OS_NAMES.get(folded, folded) or None


def node_attributes(device: Device) -> dict[str, AttributeValue]:
    """The ``node:`` attributes derivable from ``device``."""
    out: dict[str, AttributeValue] = {}
    os_name = node_os(device.os)
    if os_name:
        out["node:os"] = os_name
    os_version = device.raw.get("osVersion")
    if isinstance(os_version, str) and os_version.strip():
        out["node:osVersion"] = os_version.strip()
    version = parse_ts_version(device.client_version) if device.client_version else None
    if version:
        out["node:tsVersion"] = version
        track = release_track(version)
        if track:
            out["node:tsReleaseTrack"] = track
    for raw_key in ("tsAutoUpdate", "autoUpdate"):
        if isinstance(device.raw.get(raw_key), bool):
            out["node:tsAutoUpdate"] = device.raw[raw_key]
            break
    if isinstance(device.raw.get("tsStateEncrypted"), bool):
        out["node:tsStateEncrypted"] = device.raw["tsStateEncrypted"]
    return out
