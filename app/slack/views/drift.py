"""What admins see about drift: the one-time DM listing devices that hold a profile's attribute with no grant."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from app.access.drift import Finding, Resolution
from app.slack.views.blockkit import (
    MESSAGE_BLOCKS_MAX,
    cut,
    escape,
    line_sections,
    message_blocks,
    section,
    when,
)

LABEL_MAX = 100
VALUE_MAX = 60
ROOM = MESSAGE_BLOCKS_MAX - 2
"""Blocks for the finding lines (the first block says what happened, the last what to do)."""


def _line(finding: Finding, label: str) -> str:
    device = escape(cut(finding.device_name or finding.device_id, 120, markup=False))
    value = escape(cut(json.dumps(finding.value), VALUE_MAX, markup=False))
    done = " — *removed* (audited)" if finding.resolution == Resolution.REMOVED else ""
    return (
        f"• *{device}* holds `{escape(finding.attribute)}` = `{value}` "
        f"(profile _{escape(cut(label, LABEL_MAX, markup=False))}_), seen since {when(finding.first_seen_at)}{done}"
    )


def drift_report(findings: Sequence[Finding], label: Callable[[str], str]) -> tuple[str, list[dict[str, Any]]]:
    """The DM each admin gets once per finding: which devices hold which profile attribute without a grant, which
    of them reconcile removed (``remove_unexplained``), and what to do. ``label`` names a profile by its id."""
    count = len(findings)
    removed = sum(f.resolution == Resolution.REMOVED for f in findings)
    noun = "device attribute" if count == 1 else "device attributes"
    gone = f"; {removed} of them removed already" if removed else ""
    head = (
        f":warning: accessbot found {count} {noun} that a profile grants, held with no active grant behind it "
        f"(set by hand, by another tool, or left over){gone}:"
    )
    todo = (
        "*What to do:* if it was not meant to be there, remove it with `accessbot reconcile --fix` (audited), or set "
        "`remove_unexplained: true` on the profile so the scheduled reconcile removes it. If it was set on purpose, "
        "leave it: you are told once per device and attribute."
    )
    lines = [_line(f, label(f.profile_id)) for f in findings]
    blocks = [section(head), *line_sections(lines, ROOM, "findings")]
    if removed < count:
        blocks.append(section(todo))
    text = f"accessbot found {count} {noun} held without an active grant{gone}; `accessbot reconcile` lists them."
    return text, message_blocks(blocks)


def drift_status_blocks(count: int) -> list[dict[str, Any]]:
    """A line for ``/posture status``: how many drift findings are open (nothing when none)."""
    if not count:
        return []
    noun = "device attribute" if count == 1 else "device attributes"
    return [
        section(
            f":mag: *Drift:* {count} {noun} that a profile grants held with no active grant behind it. "
            "List them with `accessbot reconcile`; remove them with `accessbot reconcile --fix`."
        )
    ]
