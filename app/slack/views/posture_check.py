"""Views of ``/posture check <device>`` and ``/posture attrs <device>``: why a device passes or fails."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from app.posture.check import DeviceCheck
from app.slack.views.blockkit import (
    MESSAGE_BLOCKS_MAX,
    SECTION_TEXT_MAX,
    Block,
    cap_groups,
    context,
    escape,
    header,
    join_lines,
    line_sections,
    message_blocks,
    section,
    slack_length,
)
from app.slack.views.request_message import time_left
from app.tailnet.models import AttributeSet, Device

NAME_LIMIT = 200
"""Room for a device, posture, rule or attribute name inside a line (escaped)."""
CONDITION_LIMIT = 500
"""Room for a condition's text or reason inside a line (escaped)."""


def _value(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def check_blocks(device: Device, check: DeviceCheck) -> tuple[str, list[Block]]:
    """Every posture with ✓/✗ and each condition's actual value and reason; then the rules the device meets.

    Within a message's 50 blocks: postures past the room left are summed up as "…and N more postures".
    """
    passed = [p.name for p in check.postures if p.passed]
    text = escape(f"{device.name}: meets {', '.join(passed) or 'no posture'} of {len(check.postures)}", 2000)
    blocks: list[Block] = [
        header(f"Posture of {device.short_name}"),
        context(
            f"`{escape(device.name, NAME_LIMIT)}` · {escape(device.os or 'unknown OS', NAME_LIMIT)} · "
            f"{escape(device.user or 'no owner', NAME_LIMIT)}"
        ),
    ]
    if not check.postures:
        blocks.append(section("The policy file defines no postures."))
    postures: list[list[Block]] = []
    for posture in check.postures:
        icon = ":white_check_mark:" if posture.passed else ":x:"
        lines = [
            f"{'✓' if result.passed else '✗'} `{escape(result.condition.text, CONDITION_LIMIT)}` — "
            f"{escape(result.reason, CONDITION_LIMIT)}"
            for result in posture.conditions
        ]
        lines.extend(f"✗ {escape(error, CONDITION_LIMIT)}" for error in posture.errors)
        title = f"{icon} *{escape(posture.name, NAME_LIMIT)}*"
        body = join_lines(lines, SECTION_TEXT_MAX - slack_length(title) - 1, "conditions")
        postures.append([section(f"{title}\n{body}" if body else title)])
    rules_room = 1 if check.rules else 0
    blocks += cap_groups(postures, MESSAGE_BLOCKS_MAX - len(blocks) - rules_room, "postures")
    met = [r for r in check.rules if r.met and r.via != "open"]
    unmet = [r for r in check.rules if not r.met]
    if check.rules:
        summary = []
        if met:
            summary.append(
                "Meets the posture of "
                + ", ".join(f"{_name(r.rule.label)} → {', '.join(map(_name, r.rule.dst)) or '*'}" for r in met)
            )
        if unmet:
            summary.append(
                "Does not meet "
                + ", ".join(f"{_name(r.rule.label)} (needs {' or '.join(map(_name, r.required))})" for r in unmet)
            )
        blocks.append(context("; ".join(summary) if summary else "No rule asks for a posture."))
    return text, message_blocks(blocks)


def _name(name: str) -> str:
    return escape(name, NAME_LIMIT)


def attrs_blocks(device: Device, attributes: AttributeSet, now: datetime) -> tuple[str, list[Block]]:
    """A device's attributes with the time left before each expiry (within 50 blocks, then "…and N more")."""
    lines = []
    for key, value in attributes.attributes.items():
        expiry = attributes.expiries.get(key)
        left = f" — {time_left(expiry, now)}" if expiry else ""
        lines.append(f"`{escape(key, NAME_LIMIT)}` = {escape(_value(value), CONDITION_LIMIT)}{left}")
    text = escape(f"{device.name}: {len(lines)} attributes", 2000)
    head = header(f"Attributes of {device.short_name}")
    if not lines:
        return text, [head, section("No attributes are set.")]
    return text, message_blocks([head, *line_sections(lines, MESSAGE_BLOCKS_MAX - 1, "attributes")])
