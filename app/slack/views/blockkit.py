"""Block Kit limits and builders that stay within them by construction.

Slack refuses a whole message or view (``invalid_blocks`` / ``invalid_arguments``) when one string is a
character too long, one list an item too many, or an ``initial_option`` not among the options; the user
then sees nothing. Every view builds its blocks here, so no profile description, device name or count can
push a surface past a limit: human text is escaped and cut (never inside ``&amp;`` or ``<@U…>``), lists are
capped with an "…and N more" line, and identifiers that cannot be cut without changing meaning raise.

Lengths are counted in UTF-16 code units, which is never less than Python's ``len``: Slack does not say
which unit it counts, so the stricter one is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from app.core.timefmt import format_rfc3339

Block = dict[str, Any]

# ----------------------------------------------------------------------------------------------------
# limits, as published in Slack's Block Kit reference (docs.slack.dev/reference/block-kit)
# ----------------------------------------------------------------------------------------------------

MESSAGE_BLOCKS_MAX = 50  # Block Kit reference, Blocks: "up to 50 blocks in each message"
VIEW_BLOCKS_MAX = 100  # Block Kit reference, Blocks / Modal views: "100 blocks in modals or Home tabs"
TEXT_OBJECT_MAX = 3000  # Block Kit reference, Text object: text "maximum length is 3000 characters"
SECTION_TEXT_MAX = 3000  # Block Kit reference, Section block: text "maximum length ... is 3000 characters"
SECTION_FIELDS_MAX = 10  # Block Kit reference, Section block: fields "maximum number of items is 10"
SECTION_FIELD_MAX = 2000  # Block Kit reference, Section block: fields "maximum length ... in each item is 2000"
HEADER_TEXT_MAX = 150  # Block Kit reference, Header block: text "maximum length ... is 150 characters"
CONTEXT_ELEMENTS_MAX = 10  # Block Kit reference, Context block: elements "maximum number of items is 10"
ACTIONS_ELEMENTS_MAX = 25  # Block Kit reference, Actions block: "a maximum of 25 elements"
INPUT_LABEL_MAX = 2000  # Block Kit reference, Input block: label "maximum length ... is 2000 characters"
INPUT_HINT_MAX = 2000  # Block Kit reference, Input block: hint "maximum length ... is 2000 characters"
PLACEHOLDER_MAX = 150  # Block Kit reference, select menus / plain-text input: placeholder "150 characters"
BUTTON_TEXT_MAX = 75  # Block Kit reference, Button element: text "maximum length ... is 75 characters"
BUTTON_VALUE_MAX = 2000  # Block Kit reference, Button element: value "maximum length is 2000 characters"
BUTTON_URL_MAX = 3000  # Block Kit reference, Button element: url "maximum length is 3000 characters"
OPTION_TEXT_MAX = 75  # Block Kit reference, Option object: text "maximum length ... is 75 characters"
OPTION_VALUE_MAX = 150  # Block Kit reference, Option object: value "maximum length ... is 150 characters"
OPTION_DESCRIPTION_MAX = 75  # Block Kit reference, Option object: description "is 75 characters"
OPTION_GROUP_LABEL_MAX = 75  # Block Kit reference, Option group object: label "is 75 characters"
OPTIONS_MAX = 100  # Block Kit reference, Select menu element: "maximum number of options is 100"
OPTION_GROUPS_MAX = 100  # Block Kit reference, Select menu element: "maximum number of option groups is 100"
ID_MAX = 255  # Block Kit reference: action_id, block_id and callback_id "maximum length ... 255 characters"
MODAL_TITLE_MAX = 24  # Block Kit reference, Modal views: title, submit and close "max length of 24 characters"
PRIVATE_METADATA_MAX = 3000  # Block Kit reference, Modal views: private_metadata "max length of 3000 characters"
TEXT_INPUT_LENGTH_MAX = 3000  # Block Kit reference, Plain-text input element: max_length "between 1 and 3000"

ELLIPSIS = "…"
MORE_VALUE = "__more__"
"""The value of the "…and N more" option: not a profile, duration or user id (``read_form`` ignores it)."""

# ----------------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------------

# Marks that belong to the character before them: combining marks, variation selectors, skin tones,
# emoji tag characters, and a zero-width joiner with the character it joins.
_EXTEND = (
    r"(?:[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"
    r"\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]|\u200d.)"
)
_GRAPHEME = rf"\r\n|[\U0001F1E6-\U0001F1FF]{{2}}|.{_EXTEND}*"
_ENTITY = r"&(?:[A-Za-z]+|#[0-9]+|#[xX][0-9A-Fa-f]+);"
_ANGLE_SPAN = r"<[^<>]*>"
_MARKUP_ATOMS = re.compile(rf"{_ENTITY}|{_ANGLE_SPAN}|{_GRAPHEME}", re.DOTALL)
_PLAIN_ATOMS = re.compile(_GRAPHEME, re.DOTALL)
_USER_ID = re.compile(r"[A-Z0-9]{1,64}")


def _more_text(count: int, noun: str) -> str:
    """The words closing a cut list."""
    return f"{ELLIPSIS}and {count} more {noun}"


def slack_length(text: str) -> int:
    """Length in UTF-16 code units (an astral emoji counts 2), the stricter reading of Slack's "characters"."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def escape(text: str, limit: int | None = None) -> str:
    """``text`` made inert in mrkdwn (``&``, ``<``, ``>`` as entities), cut to ``limit`` if given.

    Escaping first and cutting second is what makes the cut safe: the cut never splits an entity.
    """
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped if limit is None else cut(escaped, limit)


def cut(text: str, limit: int, *, markup: bool = True) -> str:
    """``text`` shortened to at most ``limit`` UTF-16 units, ending in ``…`` when shortened.

    Never splits a character, an emoji sequence (ZWJ, skin tone, flag, keycap), and with ``markup`` (mrkdwn)
    never an entity (``&amp;``) or a ``<…>`` token (a mention, date or link is dropped whole if it does not fit).
    """
    if limit <= 0:
        return ""
    if slack_length(text) <= limit:
        return text
    budget = limit - slack_length(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for atom in (_MARKUP_ATOMS if markup else _PLAIN_ATOMS).finditer(text):
        size = slack_length(atom.group())
        if used + size > budget:
            break
        kept.append(atom.group())
        used += size
    return "".join(kept).rstrip() + ELLIPSIS


def user(user_id: str) -> str:
    """A user mention; anything that is not a Slack user id is shown escaped instead of forming a token."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def when(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """A Slack date token shown in the reader's time zone, with an RFC 3339 fallback."""
    return f"<!date^{int(moment.timestamp())}^{fmt}|{format_rfc3339(moment)}>"


def _ident(value: str, limit: int, what: str) -> str:
    """An identifier within ``limit``: cutting one would silently point somewhere else, so refuse."""
    if slack_length(value) > limit:
        raise ValueError(f"{what} is longer than Slack's {limit}: {value[:40]!r}…")
    return value


# ----------------------------------------------------------------------------------------------------
# text objects and blocks
# ----------------------------------------------------------------------------------------------------


def plain(text: str, limit: int = OPTION_TEXT_MAX, *, emoji: bool | None = True) -> dict[str, Any]:
    """A ``plain_text`` object cut to ``limit`` (never empty: Slack refuses empty text); ``emoji=None`` omits it.

    The default is the shortest common limit (option and button text), so an unsized label is always safe.
    """
    out: dict[str, Any] = {"type": "plain_text", "text": cut(text, limit, markup=False) or "-"}
    if emoji is not None:
        out["emoji"] = emoji
    return out


def mrkdwn(text: str, limit: int = TEXT_OBJECT_MAX) -> dict[str, Any]:
    """A ``mrkdwn`` object cut to ``limit``; ``verbatim`` so user text is never auto-linked into mentions."""
    return {"type": "mrkdwn", "text": cut(text, limit) or "-", "verbatim": True}


def _block(kind: str, block_id: str | None = None, **rest: Any) -> Block:
    out: Block = {"type": kind}
    if block_id is not None:
        out["block_id"] = _ident(block_id, ID_MAX, "block_id")
    out.update(rest)
    return out


def section(text: str, *, block_id: str | None = None, **extra: Any) -> Block:
    """A section of mrkdwn text (≤ 3000)."""
    return _block("section", block_id, text=mrkdwn(text, SECTION_TEXT_MAX), **extra)


def fields(texts: Sequence[str], *, block_id: str | None = None) -> Block:
    """A two-column section: at most 10 mrkdwn fields of at most 2000 each (the rest is left out)."""
    return _block("section", block_id, fields=[mrkdwn(t, SECTION_FIELD_MAX) for t in texts[:SECTION_FIELDS_MAX]])


def context(*texts: str, block_id: str | None = None) -> Block:
    """A context block of up to 10 mrkdwn elements."""
    return _block("context", block_id, elements=[mrkdwn(t) for t in texts[:CONTEXT_ELEMENTS_MAX]])


def header(text: str, *, block_id: str | None = None) -> Block:
    """A header block (plain text ≤ 150)."""
    return _block("header", block_id, text=plain(text, HEADER_TEXT_MAX))


def actions(*elements: Block, block_id: str | None = None) -> Block:
    """An actions block of up to 25 elements."""
    return _block("actions", block_id, elements=list(elements[:ACTIONS_ELEMENTS_MAX]))


def button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    """A button (text ≤ 75; ``action_id`` ≤ 255 and ``value`` ≤ 2000 or ``ValueError``)."""
    out: Block = {
        "type": "button",
        "text": plain(text, BUTTON_TEXT_MAX),
        "action_id": _ident(action_id, ID_MAX, "action_id"),
        "value": _ident(value, BUTTON_VALUE_MAX, "button value"),
    }
    if style:
        out["style"] = style
    return out


def placeholder(text: str) -> dict[str, Any]:
    """A placeholder text object (≤ 150)."""
    return plain(text, PLACEHOLDER_MAX)


def option(text: str, value: str, *, description: str | None = None, emoji: bool | None = True) -> dict[str, Any]:
    """A select option: text and description ≤ 75, ``value`` ≤ 150 (or ``ValueError``: it is an id)."""
    out: dict[str, Any] = {
        "text": plain(text, OPTION_TEXT_MAX, emoji=emoji),
        "value": _ident(value, OPTION_VALUE_MAX, "option value"),
    }
    if description:
        out["description"] = plain(description, OPTION_DESCRIPTION_MAX, emoji=emoji)
    return out


def option_group(label: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """An option group: label ≤ 75, at most 100 options."""
    return {"label": plain(label, OPTION_GROUP_LABEL_MAX, emoji=None), "options": options[:OPTIONS_MAX]}


def more_option(count: int) -> dict[str, Any]:
    """The last option of a capped list; its value is :data:`MORE_VALUE`, which readers ignore."""
    return option(_more_text(count, "").rstrip(), MORE_VALUE)


def cap_options(
    options: Sequence[dict[str, Any]], keep: Iterable[str] = (), limit: int = OPTIONS_MAX
) -> list[dict[str, Any]]:
    """At most ``limit`` options; when cut, the last says "…and N more" and every value in ``keep`` stays.

    A selected option must stay shown: Slack refuses an ``initial_option`` that is not among the options.
    """
    if len(options) <= limit:
        return list(options)
    wanted = set(keep)
    room = limit - 1
    kept_count = min(room, sum(1 for o in options if o.get("value") in wanted))
    others = room - kept_count
    shown: list[dict[str, Any]] = []
    for opt in options:
        if opt.get("value") in wanted and kept_count > 0:
            shown.append(opt)
            kept_count -= 1
        elif opt.get("value") not in wanted and others > 0:
            shown.append(opt)
            others -= 1
    return [*shown, more_option(len(options) - len(shown))]


def static_select(
    action_id: str,
    options: Sequence[dict[str, Any]],
    *,
    initial: str | Sequence[str] | None = None,
    placeholder_text: str | None = None,
    multi: bool = False,
) -> Block:
    """A (multi) static select of at most 100 options whose ``initial_option(s)`` are among them.

    ``initial`` is the value (or values) to pre-select; values not offered are left out rather than refused.
    """
    wanted = [initial] if isinstance(initial, str) else list(initial or [])
    shown = cap_options(options, keep=wanted)
    out: Block = {
        "type": "multi_static_select" if multi else "static_select",
        "action_id": _ident(action_id, ID_MAX, "action_id"),
        "options": shown,
    }
    if placeholder_text:
        out["placeholder"] = placeholder(placeholder_text)
    chosen = [o for o in shown if o["value"] in wanted and o["value"] != MORE_VALUE]
    if multi and chosen:
        out["initial_options"] = chosen
    elif chosen:
        out["initial_option"] = chosen[0]
    return out


def input_block(
    block_id: str,
    label: str,
    element: Block,
    *,
    hint: str | None = None,
    optional: bool | None = None,
    dispatch_action: bool | None = None,
) -> Block:
    """An input block: label and hint ≤ 2000."""
    out = _block("input", block_id, label=plain(label, INPUT_LABEL_MAX), element=element)
    if hint:
        out["hint"] = plain(hint, INPUT_HINT_MAX)
    if optional is not None:
        out["optional"] = optional
    if dispatch_action is not None:
        out["dispatch_action"] = dispatch_action
    return out


# ----------------------------------------------------------------------------------------------------
# lists of blocks and surfaces
# ----------------------------------------------------------------------------------------------------


def more_block(count: int, noun: str) -> Block:
    """The "…and N more <noun>" line that closes a cut list."""
    return context(_more_text(count, noun))


def cap_groups(groups: Sequence[Sequence[Block]], room: int, noun: str) -> list[Block]:
    """Whole items (each one or more blocks) within ``room`` blocks, closed by "…and N more <noun>" if cut."""
    if sum(len(g) for g in groups) <= room:
        return [block for group in groups for block in group]
    out: list[Block] = []
    shown = 0
    for group in groups:
        if len(out) + len(group) > room - 1:
            break
        out.extend(group)
        shown += 1
    return [*out, more_block(len(groups) - shown, noun)]


def join_lines(lines: Sequence[str], limit: int, noun: str) -> str:
    """Whole mrkdwn lines within ``limit``, closed by "…and N more <noun>" when some are left out."""
    text = "\n".join(lines)
    if slack_length(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for line in lines:
        tail = slack_length("\n" + _more_text(len(lines) - len(kept) - 1, noun))
        sep = 1 if kept else 0
        if used + sep + slack_length(line) + tail > limit:
            break
        kept.append(line)
        used += sep + slack_length(line)
    if not kept:  # the first line alone is too long: show its start rather than nothing
        left = len(lines) - 1
        tail_text = "\n" + _more_text(left, noun) if left else ""
        return (cut(lines[0], limit - slack_length(tail_text)) + tail_text).lstrip("\n")
    return "\n".join(kept) + "\n" + _more_text(len(lines) - len(kept), noun)


def line_sections(lines: Sequence[str], room: int, noun: str) -> list[Block]:
    """mrkdwn lines packed into as few sections (≤ 3000 each) as fit in ``room`` blocks, then "…and N more"."""
    chunks: list[list[str]] = []
    size = 0
    for line in lines:
        line = cut(line, SECTION_TEXT_MAX)
        if chunks and size + 1 + slack_length(line) <= SECTION_TEXT_MAX:
            chunks[-1].append(line)
            size += 1 + slack_length(line)
        else:
            chunks.append([line])
            size = slack_length(line)
    if len(chunks) <= room:
        return [section("\n".join(chunk)) for chunk in chunks]
    shown = chunks[: room - 1]
    left = sum(len(chunk) for chunk in chunks[room - 1 :])
    return [*(section("\n".join(chunk)) for chunk in shown), more_block(left, noun)]


def cap_blocks(blocks: Sequence[Block], limit: int, noun: str = "blocks") -> list[Block]:
    """At most ``limit`` blocks (the last says how many were left out): the last guard of every surface."""
    return cap_groups([[b] for b in blocks], limit, noun)


def message_blocks(blocks: Sequence[Block]) -> list[Block]:
    """Blocks of a message (≤ 50)."""
    return cap_blocks(blocks, MESSAGE_BLOCKS_MAX)


def home(blocks: Sequence[Block]) -> dict[str, Any]:
    """An App Home view (≤ 100 blocks)."""
    return {"type": "home", "blocks": cap_blocks(blocks, VIEW_BLOCKS_MAX)}


def modal(
    *,
    title: str,
    blocks: Sequence[Block],
    callback_id: str | None = None,
    submit: str | None = None,
    close: str | None = None,
    private_metadata: str | None = None,
) -> dict[str, Any]:
    """A modal: title, submit and close ≤ 24, ≤ 100 blocks; ``callback_id`` ≤ 255 and metadata ≤ 3000 or raise."""
    view: dict[str, Any] = {"type": "modal"}
    if callback_id is not None:
        view["callback_id"] = _ident(callback_id, ID_MAX, "callback_id")
    view["title"] = plain(title, MODAL_TITLE_MAX)
    if submit is not None:
        view["submit"] = plain(submit, MODAL_TITLE_MAX)
    if close is not None:
        view["close"] = plain(close, MODAL_TITLE_MAX)
    if private_metadata is not None:
        view["private_metadata"] = _ident(private_metadata, PRIVATE_METADATA_MAX, "private_metadata")
    view["blocks"] = cap_blocks(blocks, VIEW_BLOCKS_MAX)
    return view
