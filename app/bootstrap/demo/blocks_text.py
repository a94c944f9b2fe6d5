"""Block Kit as a person would read it in Slack, in plain text lines (header, sections, context, buttons, inputs).

Slack's mrkdwn entities (docs.slack.dev/messaging/formatting-message-text) are shown as Slack shows them:
``<@U123>`` as ``@Name``, ``<#C123>`` as ``#channel``, ``<!date^...|fallback>`` as its fallback text,
``<url|label>`` as the label, ``*bold*`` without its stars, and ``&lt; &gt; &amp;`` unescaped; a field
``*Label*\nvalue`` reads ``Label: value``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

_ENTITY = re.compile(r"<([^<>]+)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
NameOf = Callable[[str], str]


def _entity(inner: str, user_name: NameOf, channel_name: NameOf) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (label or user_name(target[1:]))
    if target.startswith("#"):
        return f"#{label}" if label else channel_name(target[1:])
    if target.startswith("!subteam^"):
        return label or "@group"
    if target.startswith("!date^"):
        return label or target
    if target.startswith("!"):
        return "@" + (label or target[1:])
    return label or target


def plain(text: str, user_name: NameOf = str, channel_name: NameOf = str) -> str:
    """mrkdwn ``text`` as it reads in Slack."""
    shown = _BOLD.sub(r"\1", _ENTITY.sub(lambda m: _entity(m.group(1), user_name, channel_name), text))
    return shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Any, user_name: NameOf, channel_name: NameOf) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return plain(obj["text"], user_name, channel_name) if obj.get("type") == "mrkdwn" else obj["text"]
    return ""


def _element(element: dict[str, Any], user_name: NameOf, channel_name: NameOf) -> str:
    kind = element.get("type")
    if kind == "button":
        return f"[ {_text(element.get('text'), user_name, channel_name)} ]"
    if kind in ("mrkdwn", "plain_text"):
        return _text(element, user_name, channel_name)
    if kind == "image":
        return str(element.get("alt_text") or "")
    placeholder = _text(element.get("placeholder"), user_name, channel_name)
    return f"<{kind}{': ' + placeholder if placeholder else ''}>"


def block_lines(blocks: list[dict[str, Any]], *, user_name: NameOf = str, channel_name: NameOf = str) -> Iterator[str]:
    """One or more lines per block, in order."""
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            yield f"== {_text(block.get('text'), user_name, channel_name)} =="
        elif kind == "section":
            text = _text(block.get("text"), user_name, channel_name)
            yield from (line for line in text.splitlines() if text)
            for item in block.get("fields") or []:
                label, _, value = _text(item, user_name, channel_name).partition("\n")
                yield f"  {label}: {' '.join(value.split())}" if value else f"  {label}"
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                yield "  " + _element(accessory, user_name, channel_name)
        elif kind == "context":
            parts = [_element(e, user_name, channel_name) for e in block.get("elements") or [] if isinstance(e, dict)]
            yield "  (" + " · ".join(p for p in parts if p) + ")"
        elif kind == "actions":
            yield " ".join(_element(e, user_name, channel_name) for e in block.get("elements") or [])
        elif kind == "input":
            label = _text(block.get("label"), user_name, channel_name)
            yield f"{label}: {_element(block.get('element') or {}, user_name, channel_name)}"
        elif kind == "divider":
            yield "---"
        elif kind == "rich_text":
            yield "(rich text)"
