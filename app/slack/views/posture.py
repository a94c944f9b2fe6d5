"""Views of the posture admin commands: the status card, sync results, and the connect modal."""

from __future__ import annotations

import json
from typing import Any

from app.slack.ids import CallbackId
from app.slack.views.blockkit import (
    MESSAGE_BLOCKS_MAX,
    Block,
    cap_groups,
    context,
    escape,
    fields,
    header,
    input_block,
    modal,
    section,
)
from app.slack.views.delivery import MAX_SHOWN as CHANNEL_PROBLEMS_SHOWN
from app.vendors.base import VendorSpec
from app.vendors.integrations import Integration
from app.vendors.sync import SyncReport

_STATE_ICON = {
    "ok": ":large_green_circle:",
    "error": ":red_circle:",
    "paused": ":double_vertical_bar:",
    "sync requested": ":arrows_counterclockwise:",
    "never synced": ":white_circle:",
}
TEXT_LIMIT = 1000
"""Room for a vendor-provided string (label, headline, error) inside a line, escaped."""
STATUS_CARD_MAX = MESSAGE_BLOCKS_MAX - (CHANNEL_PROBLEMS_SHOWN + 2) - 2
"""Blocks of the status card: ``/posture status`` appends the channel-problem section (a header, up to
``CHANNEL_PROBLEMS_SHOWN`` problems and a "more" line) and the unreviewed break-glass grants (a header and a
section), and the message must stay within Slack's 50."""


def status_card(statuses: list[dict[str, Any]]) -> list[Block]:
    """One section per integration (from ``app.vendors.status.status_of``), in at most ``STATUS_CARD_MAX`` blocks."""
    blocks: list[Block] = [header("EDR posture integrations")]
    if not statuses:
        blocks.append(
            section(
                "No EDR integration is connected. An admin can run `/posture connect <vendor>`, e.g. "
                "`/posture connect crowdstrike` (an unknown name lists the vendors accessbot knows)."
            )
        )
        return blocks
    cards: list[list[Block]] = []
    for status in statuses:
        icon = _STATE_ICON.get(status["state"], ":white_circle:")
        card = [
            section(
                f"{icon} *{escape(str(status['label']), TEXT_LIMIT)}* — {escape(str(status['headline']), TEXT_LIMIT)}"
            ),
            fields(
                [
                    f"*Devices synced*\n{status['devices_synced']}",
                    f"*Agents without serial*\n{status['agents_without_serial']}",
                    f"*Devices without identity*\n{status['devices_without_identity']}",
                    f"*Duplicate serials resolved*\n{status['duplicate_serials_resolved']}",
                ]
            ),
        ]
        notes = [f"Matching: {escape(str(status['matching']), TEXT_LIMIT)}"] if status.get("matching") else []
        if status["last_error"]:
            notes.append(f":warning: Last error: {escape(str(status['last_error']), TEXT_LIMIT)}")
        if status["paused_until"]:
            notes.append(
                f"Paused until {escape(str(status['paused_until']))} (fix the credentials with `/posture connect "
                f"{escape(str(status['vendor']))}` to resume now)"
            )
        if notes:
            card.append(context("\n".join(notes)))
        cards.append(card)
    blocks += cap_groups(cards, STATUS_CARD_MAX - len(blocks), "integrations")
    return blocks


def sync_result(report: SyncReport) -> tuple[str, list[Block]]:
    """Fallback text and blocks announcing one sync's outcome (vendor strings escaped in both)."""
    label = escape(report.label, TEXT_LIMIT)
    error = escape(str(report.error), TEXT_LIMIT)
    if report.result == "ok":
        text = (
            f":white_check_mark: {label} sync done: {escape(report.summary, TEXT_LIMIT)}. {report.sets} attributes "
            f"set and {report.deletes} removed on {report.devices_changed} devices."
        )
    elif report.result == "skipped":
        text = f":hourglass: {label} sync skipped: {error}."
    else:
        text = f":x: {label} sync failed: {error}"
    return text, [section(text)]


def connect_modal(spec: VendorSpec, existing: Integration | None) -> dict[str, Any]:
    """A form of the vendor's fields; secrets are never pre-filled (leave blank to keep them on update)."""
    blocks: list[Block] = [
        section(
            f"{'Update' if existing else 'Connect'} *{escape(spec.label, TEXT_LIMIT)}*. Secrets are encrypted at rest "
            "and never shown again" + ("; leave a secret blank to keep the stored one." if existing else ".")
        )
    ]
    for spec_field in spec.fields:
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value"}
        current = (existing.settings.get(spec_field.name) if existing else None) if not spec_field.secret else None
        if current:
            element["initial_value"] = str(current)
        blocks.append(
            input_block(
                f"field:{spec_field.name}",
                spec_field.label,
                element,
                hint=spec_field.help or None,
                optional=not spec_field.required or (existing is not None and spec_field.secret),
            )
        )
    return modal(
        callback_id=CallbackId.CONNECT_MODAL,
        title=f"Connect {spec.label}",
        submit="Save and sync",
        close="Cancel",
        private_metadata=json.dumps({"vendor": spec.id}),
        blocks=blocks,
    )


def read_connect_form(state_values: dict[str, Any]) -> dict[str, str]:
    """Field name → typed value (blank fields left out)."""
    out: dict[str, str] = {}
    for block_id, actions in state_values.items():
        if not block_id.startswith("field:"):
            continue
        value = ((actions or {}).get("value") or {}).get("value")
        if value is not None and str(value).strip():
            out[block_id.split(":", 1)[1]] = str(value).strip()
    return out
