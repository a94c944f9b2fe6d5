"""The "what will this unlock" section of the approver's DM and of the request modal (data in, blocks out).

One section of at most ``MAX_LINES`` destinations, cut to Slack's 3,000 characters with "…and N more", then,
if any, one section of rules that would still stay shut (with the conditions that fail) and one of access the
attribute would take away. Every policy string is escaped and cut: a rule's ``dst`` can be long.
"""

from __future__ import annotations

import json

from app.posture.unlock import RuleAccess, Unlock
from app.slack.views.blockkit import SECTION_TEXT_MAX, Block, escape, join_lines, section

MAX_LINES = 10
"""Rules listed per section; the rest is counted ("…and N more rules")."""
ITEM_LIMIT = 120
"""Room for one destination, port or capability (escaped)."""
LIST_LIMIT = 6
"""Destinations or ports shown per rule."""


def _code_list(items: tuple[str, ...], limit: int = LIST_LIMIT) -> str:
    shown = ", ".join(f"`{escape(item, ITEM_LIMIT)}`" for item in items[:limit])
    return shown + (f" +{len(items) - limit}" if len(items) > limit else "")


def _ports(access: RuleAccess) -> str:
    """``on tcp:443, tcp:22`` / ``on all ports`` / ``app x`` for a grant; nothing for an acl (ports are in dst)."""
    parts: list[str] = []
    if access.ports:
        parts.append("all ports" if "*" in access.ports else f"on {_code_list(access.ports)}")
    if access.apps:
        parts.append(f"app {_code_list(access.apps)}")
    return " " + " and ".join(parts) if parts else ""


def rule_line(access: RuleAccess) -> str:
    """``• `tag:prod` on `tcp:443` (grants[0], from `group:eng`)`` — where, what, which rule, for whom."""
    dst = _code_list(access.destinations) or "_no destination_"
    src = _code_list(access.rule.src) or "anyone"
    return f"• {dst}{_ports(access)} ({access.rule.label}, from {src})"


def _blocked_line(access: RuleAccess) -> str:
    missing = "; ".join(escape(m, 300) for m in access.missing[:3])
    more = f" +{len(access.missing) - 3}" if len(access.missing) > 3 else ""
    return f"{rule_line(access)}: still needs {missing}{more}"


def _lines(rules: tuple[RuleAccess, ...], *, blocked: bool = False) -> list[str]:
    render = _blocked_line if blocked else rule_line
    out = [render(r) for r in rules[:MAX_LINES]]
    if len(rules) > MAX_LINES:
        out.append(f"…and {len(rules) - MAX_LINES} more rules")
    return out


def _attribute(unlock: Unlock) -> str:
    value = unlock.value if isinstance(unlock.value, str) else json.dumps(unlock.value)
    return f"`{escape(unlock.key, ITEM_LIMIT)} = {escape(str(value), ITEM_LIMIT)}`"


def unlock_blocks(unlock: Unlock, *, requester: bool = False) -> list[Block]:
    """The blocks of the section; ``requester`` words it for the person asking (the modal)."""
    if not unlock.used:
        return [
            section(
                f":warning: Nothing in the tailnet policy uses `{escape(unlock.key, ITEM_LIMIT)}`: "
                "this grant opens no access by itself."
            )
        ]
    head = "*This would give you access to:*" if requester else "*This grants access to:*"
    if unlock.unlocked:
        text = join_lines([head, *_lines(unlock.unlocked)], SECTION_TEXT_MAX, "rules")
    else:
        text = f"{head} nothing new on this device."
    blocks = [section(text)]
    if unlock.blocked:
        still = f"*Still shut with {_attribute(unlock)}:*"
        blocks.append(section(join_lines([still, *_lines(unlock.blocked, blocked=True)], SECTION_TEXT_MAX, "rules")))
    if unlock.lost:
        lost = f":warning: *Access lost while {_attribute(unlock)} is set:*"
        blocks.append(section(join_lines([lost, *_lines(unlock.lost)], SECTION_TEXT_MAX, "rules")))
    return blocks
