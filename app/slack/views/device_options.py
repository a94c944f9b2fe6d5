"""The answer to the device picker's ``block_suggestion``: option groups built from ``DeviceMatches``.

A pure function of its data: no Slack client, no I/O. Slack's limits (its Block Kit reference): at most 100 options,
option text ≤ 75 characters, value ≤ 150 — kept by the builders of :mod:`app.slack.views.blockkit`.
"""

from __future__ import annotations

from typing import Any

from app.slack.device_index import DeviceMatches
from app.slack.views.blockkit import (
    OPTION_TEXT_MAX,
    OPTION_VALUE_MAX,
    OPTIONS_MAX,
    cut,
    option,
    option_group,
    slack_length,
)
from app.tailnet.models import Device

MAX_OPTIONS = OPTIONS_MAX
OPTION_TEXT_LIMIT = OPTION_TEXT_MAX
OPTION_VALUE_LIMIT = OPTION_VALUE_MAX
MINE_LABEL = "Your devices"
OTHERS_LABEL = "Other devices"
TAGGED_LABEL = "Tagged devices"
SEPARATOR = " · "


def truncate(text: str, limit: int) -> str:
    """Plain ``text`` cut to ``limit`` (UTF-16 units, whole emoji), ending in ``…``: :func:`blockkit.cut`."""
    return cut(text, limit, markup=False)


def device_option_text(device: Device) -> str:
    """``laptop · macos · alice@example.com``, at most 75 characters."""
    parts = [device.short_name or device.name or device.node_id, device.os, device.user]
    return truncate(SEPARATOR.join(part for part in parts if part), OPTION_TEXT_LIMIT)


def device_option(device: Device) -> dict[str, Any] | None:
    """One select option whose value is the device id; ``None`` if no id fits Slack's value limit."""
    value = next((v for v in (device.id, device.node_id) if v and slack_length(v) <= OPTION_VALUE_LIMIT), None)
    if value is None:
        return None
    return option(device_option_text(device), value, emoji=None)


def _options(devices: list[Device], room: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for device in devices:
        if len(out) >= room:
            break
        opt = device_option(device)
        if opt is not None:
            out.append(opt)
    return out


def device_option_groups(matches: DeviceMatches, *, others_label: str = OTHERS_LABEL) -> dict[str, Any]:
    """Slack's options response: "Your devices" then ``others_label`` ("Other devices"), empty groups left out.

    At most 100 options in all (own devices take precedence); ``{"options": []}`` when nothing matches.
    """
    mine = _options(matches.mine, MAX_OPTIONS)
    others = _options(matches.others, MAX_OPTIONS - len(mine))
    groups = [
        option_group(label, options) for label, options in ((MINE_LABEL, mine), (others_label, others)) if options
    ]
    return {"option_groups": groups} if groups else {"options": []}
