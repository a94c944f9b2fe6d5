"""Views of the posture admin commands: the status card, sync results, and the connect modal."""

from __future__ import annotations

import json
from typing import Any

from app.slack.ids import CallbackId
from app.slack.views.common import context, escape, plain, section
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


def status_card(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One section per integration (from ``app.vendors.status.status_of``)."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": plain("EDR posture integrations", 150)}]
    if not statuses:
        blocks.append(
            section(
                "No EDR integration is connected. An admin can run `/posture connect huntress` or "
                "`/posture connect sentinelone`."
            )
        )
        return blocks
    for status in statuses:
        icon = _STATE_ICON.get(status["state"], ":white_circle:")
        blocks.append(section(f"{icon} *{escape(status['label'])}* — {escape(status['headline'])}"))
        fields = [
            f"*Devices synced*\n{status['devices_synced']}",
            f"*Agents without serial*\n{status['agents_without_serial']}",
            f"*Devices without identity*\n{status['devices_without_identity']}",
            f"*Duplicate serials resolved*\n{status['duplicate_serials_resolved']}",
        ]
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
        notes = []
        if status["last_error"]:
            notes.append(f":warning: Last error: {escape(status['last_error'])}")
        if status["paused_until"]:
            notes.append(
                f"Paused until {status['paused_until']} (fix the credentials with `/posture connect "
                f"{status['vendor']}` to resume now)"
            )
        if notes:
            blocks.append(context("\n".join(notes)))
    return blocks[:100]


def sync_result(report: SyncReport) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks announcing one sync's outcome."""
    if report.result == "ok":
        text = (
            f":white_check_mark: {report.label} sync done: {report.summary}. {report.sets} attributes set and "
            f"{report.deletes} removed on {report.devices_changed} devices."
        )
    elif report.result == "skipped":
        text = f":hourglass: {report.label} sync skipped: {report.error}."
    else:
        text = f":x: {report.label} sync failed: {report.error}"
    return text, [section(escape(text))]


def connect_modal(spec: VendorSpec, existing: Integration | None) -> dict[str, Any]:
    """A form of the vendor's fields; secrets are never pre-filled (leave blank to keep them on update)."""
    blocks: list[dict[str, Any]] = [
        section(
            f"{'Update' if existing else 'Connect'} *{escape(spec.label)}*. Secrets are encrypted at rest and never "
            "shown again" + ("; leave a secret blank to keep the stored one." if existing else ".")
        )
    ]
    for spec_field in spec.fields:
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value"}
        current = (existing.settings.get(spec_field.name) if existing else None) if not spec_field.secret else None
        if current:
            element["initial_value"] = str(current)
        blocks.append(
            {
                "type": "input",
                "block_id": f"field:{spec_field.name}",
                "optional": not spec_field.required or (existing is not None and spec_field.secret),
                "label": plain(spec_field.label),
                "element": element,
                **({"hint": plain(spec_field.help, 150)} if spec_field.help else {}),
            }
        )
    return {
        "type": "modal",
        "callback_id": CallbackId.CONNECT_MODAL,
        "title": plain(f"Connect {spec.label}", 24),
        "submit": plain("Save and sync"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps({"vendor": spec.id}),
        "blocks": blocks,
    }


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
