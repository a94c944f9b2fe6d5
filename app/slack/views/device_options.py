"""The answer to the device picker's ``block_suggestion``: option groups built from ``DeviceMatches``.

A pure function of its data: no Slack client, no I/O. Slack's limits (FACTS §4): at most 100 options,
option text ≤ 75 characters, value ≤ 150.
"""

from __future__ import annotations

from typing import Any

from app.tailnet.index import DeviceMatches
from app.tailnet.models import Device

MAX_OPTIONS = 100
OPTION_TEXT_LIMIT = 75
OPTION_VALUE_LIMIT = 150
MINE_LABEL = "Your devices"
OTHERS_LABEL = "Other devices"
SEPARATOR = " · "
ELLIPSIS = "…"


def _slack_length(text: str) -> int:
    """Length as Slack counts it (UTF-16 code units), never less than ``len``."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (counted by code point and by UTF-16 unit), ending in ``…``."""
    if _slack_length(text) <= limit:
        return text
    cut = text[: limit - 1]
    while cut and _slack_length(cut) > limit - 1:
        cut = cut[:-1]
    return cut.rstrip() + ELLIPSIS


def device_option_text(device: Device) -> str:
    """``laptop · macos · alice@example.com``, at most 75 characters."""
    parts = [device.short_name or device.name or device.node_id, device.os, device.user]
    return truncate(SEPARATOR.join(part for part in parts if part), OPTION_TEXT_LIMIT)


def device_option(device: Device) -> dict[str, Any] | None:
    """One select option whose value is the device id; ``None`` if no id fits Slack's value limit."""
    value = next((v for v in (device.id, device.node_id) if v and len(v) <= OPTION_VALUE_LIMIT), None)
    if value is None:
        return None
    return {"text": {"type": "plain_text", "text": device_option_text(device)}, "value": value}


def _options(devices: list[Device], room: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for device in devices:
        if len(out) >= room:
            break
        option = device_option(device)
        if option is not None:
            out.append(option)
    return out


def device_option_groups(matches: DeviceMatches) -> dict[str, Any]:
    """Slack's options response: "Your devices" then "Other devices", empty groups left out.

    At most 100 options in all (own devices take precedence); ``{"options": []}`` when nothing matches.
    """
    mine = _options(matches.mine, MAX_OPTIONS)
    others = _options(matches.others, MAX_OPTIONS - len(mine))
    groups = [
        {"label": {"type": "plain_text", "text": label}, "options": options}
        for label, options in ((MINE_LABEL, mine), (OTHERS_LABEL, others))
        if options
    ]
    return {"option_groups": groups} if groups else {"options": []}
