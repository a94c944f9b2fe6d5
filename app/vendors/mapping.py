"""Where vendor values go: their own namespace on the built-in tailnet, or mapped to ``custom:`` keys.

A real Tailscale tailnet accepts only ``custom:`` keys through its API, and custom values may hold only
letters, digits, ``_`` and ``.``. So on a real tailnet ``huntress:defenderPolicyStatus = "Non Compliant"``
becomes ``custom:huntress_defenderPolicyStatus = "Non_Compliant"``: the namespace's ``:`` becomes ``_``,
spaces become ``_``, other invalid characters are removed, strings are cut to 50 characters; numbers and
booleans keep their type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum

from app.tailnet.models import AttributeValue
from app.tailnet.rules import MAX_STRING_LENGTH

_INVALID = re.compile(r"[^A-Za-z0-9_.]")


class NamespaceMode(StrEnum):
    """``vendor``: keys and values verbatim (built-in tailnet); ``custom``: mapped (Tailscale tailnet)."""

    VENDOR = "vendor"
    CUSTOM = "custom"


def custom_key(key: str) -> str:
    """``huntress:firewallStatus`` → ``custom:huntress_firewallStatus``."""
    namespace, name = key.split(":", 1)
    return f"custom:{namespace}_{name.replace(':', '_')}"


def custom_value(value: AttributeValue) -> AttributeValue | None:
    """A vendor value as a valid custom value (``None`` when nothing valid is left of a string)."""
    if isinstance(value, bool | int):
        return value
    cleaned = _INVALID.sub("", value.strip().replace(" ", "_"))[:MAX_STRING_LENGTH]
    return cleaned or None


def map_key(key: str, mode: NamespaceMode) -> str:
    """The key a vendor attribute is written under in ``mode``."""
    return key if mode is NamespaceMode.VENDOR else custom_key(key)


def map_attributes(attributes: Mapping[str, AttributeValue], mode: NamespaceMode) -> dict[str, AttributeValue]:
    """An agent's attributes as they are written in ``mode``."""
    if mode is NamespaceMode.VENDOR:
        return dict(attributes)
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        mapped = custom_value(value)
        if mapped is not None:
            out[custom_key(key)] = mapped
    return out
