"""Views of ``/posture check <device>`` and ``/posture attrs <device>``: why a device passes or fails."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from app.posture.check import DeviceCheck
from app.slack.views.common import context, escape, plain, section
from app.slack.views.request_message import time_left
from app.tailnet.models import AttributeSet, Device

MAX_POSTURES = 30  # each posture is at most two blocks; Slack allows 100 per message


def _value(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def check_blocks(device: Device, check: DeviceCheck) -> tuple[str, list[dict[str, Any]]]:
    """Every posture with ✓/✗ and each condition's actual value and reason; then the rules the device meets."""
    passed = [p.name for p in check.postures if p.passed]
    text = f"{device.name}: meets {', '.join(passed) or 'no posture'} of {len(check.postures)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"Posture of {device.short_name}", 150)},
        context(f"`{escape(device.name)}` · {escape(device.os or 'unknown OS')} · {escape(device.user or 'no owner')}"),
    ]
    if not check.postures:
        blocks.append(section("The policy file defines no postures."))
    for posture in check.postures[:MAX_POSTURES]:
        icon = ":white_check_mark:" if posture.passed else ":x:"
        lines = [f"{icon} *{escape(posture.name)}*"]
        for result in posture.conditions:
            mark = "✓" if result.passed else "✗"
            lines.append(f"{mark} `{escape(result.condition.text)}` — {escape(result.reason)}")
        lines.extend(f"✗ {escape(error)}" for error in posture.errors)
        blocks.append(section("\n".join(lines)))
    met = [r for r in check.rules if r.met and r.via != "open"]
    unmet = [r for r in check.rules if not r.met]
    if check.rules:
        summary = []
        if met:
            summary.append(
                "Meets the posture of " + ", ".join(f"{r.rule.label} → {', '.join(r.rule.dst) or '*'}" for r in met)
            )
        if unmet:
            summary.append(
                "Does not meet " + ", ".join(f"{r.rule.label} (needs {' or '.join(r.required)})" for r in unmet)
            )
        blocks.append(context(escape("; ".join(summary)) if summary else "No rule asks for a posture."))
    return text, blocks[:100]


def attrs_blocks(device: Device, attributes: AttributeSet, now: datetime) -> tuple[str, list[dict[str, Any]]]:
    """A device's attributes with the time left before each expiry."""
    lines = []
    for key, value in attributes.attributes.items():
        expiry = attributes.expiries.get(key)
        left = f" — {time_left(expiry, now)}" if expiry else ""
        lines.append(f"`{escape(key)}` = {escape(_value(value))}{left}")
    text = f"{device.name}: {len(lines)} attributes"
    body = "\n".join(lines) or "No attributes are set."
    return text, [
        {"type": "header", "text": plain(f"Attributes of {device.short_name}", 150)},
        section(body),
    ]
