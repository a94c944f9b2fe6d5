"""A device's hardware (MAC) addresses from its posture identity, for matching EDR agents after serial numbers.

What Tailscale exposes (read 2026-12 in tailscale/tailscale and tailscale/tailscale-client-go-v2):

- The client reports its identity to the control server in ``tailcfg.C2NPostureIdentityResponse``:
  ``SerialNumbers``, ``IfaceHardwareAddrs`` (MACs of its network interfaces, sent when control asks with
  ``hwaddrs=true``) and ``PostureDisabled``. Tailscale's own CrowdStrike integration matches on these MACs.
- The public API's device JSON (``GET .../devices?fields=all``) documents ``postureIdentity`` as
  ``{"serialNumbers": [...], "disabled": bool}`` only (publicapi/device.md, the OpenAPI ``Device`` schema; the Go
  client's ``Device`` struct has no posture identity at all). No MAC field is documented there.

So MACs are read from ``postureIdentity.ifaceHardwareAddrs`` (the client's field in the API's camelCase) when a
device JSON carries it: a device imported into the built-in store with it, or a Tailscale API that returns it.
A device without it simply matches by serial number only. A device with posture identity disabled has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.macaddr import matchable_macs

HARDWARE_ADDRESSES_FIELD = "ifaceHardwareAddrs"
"""The field of ``postureIdentity`` holding the device's MAC addresses."""

_SPELLINGS = (HARDWARE_ADDRESSES_FIELD, "IfaceHardwareAddrs")  # the API's camelCase, the client's Go name


def raw_hardware_addresses(identity: Any) -> list[str]:
    """The MAC list of a ``postureIdentity`` object as given (strings only); empty when absent or disabled."""
    if not isinstance(identity, Mapping) or identity.get("disabled") is True:
        return []
    for name in _SPELLINGS:
        values = identity.get(name)
        if isinstance(values, list):
            return [v for v in values if isinstance(v, str)]
    return []


def hardware_addresses(device_json: Mapping[str, Any]) -> tuple[str, ...]:
    """A device JSON's matchable MACs, normalised (``app.core.macaddr``)."""
    return matchable_macs(raw_hardware_addresses(device_json.get("postureIdentity")))
