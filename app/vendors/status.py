"""What admins see about each integration (CLI ``integrations status`` and Slack ``/posture status``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.timefmt import format_duration, format_rfc3339
from app.vendors.integrations import Integration


def ago(moment: datetime, now: datetime) -> str:
    """``just now``, ``1 minute ago``, ``4 minutes ago``, ``2 hours ago``, ``3 days ago``."""
    seconds = max(int((now - moment).total_seconds()), 0)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def state_of(integration: Integration, now: datetime) -> str:
    """``paused``, ``sync requested``, ``never synced``, ``ok`` or ``error``."""
    if integration.paused(now):
        return "paused"
    if integration.sync_requested_at is not None:
        return "sync requested"
    if integration.last_sync_started_at is None:
        return "never synced"
    return integration.last_result or "running"


def status_of(integration: Integration, now: datetime) -> dict[str, Any]:
    """A JSON-ready status: last sync, counts of the last successful sync, last error, pause."""
    report = integration.last_report or {}
    last = integration.last_sync_finished_at or integration.last_sync_started_at
    headline = "Never synced"
    if integration.last_success_at is not None and report:
        headline = f"Last sync {ago(integration.last_success_at, now)}, {report.get('summary', '')}".rstrip(", ")
    elif last is not None:
        headline = f"Last sync attempt {ago(last, now)} failed"

    by_serial, by_mac = report.get("matches_by_serial", report.get("matches", 0)), report.get("matches_by_mac", 0)
    matching = f"{by_serial} matched by serial number, {by_mac} by MAC address"
    if integration.max_agent_age is not None:
        age = format_duration(integration.max_agent_age)
        matching += f"; {report.get('stale_matches', 0)} with an agent not seen within {age} (marked stale)"

    def when(moment: datetime | None) -> str | None:
        return format_rfc3339(moment) if moment is not None else None

    return {
        "vendor": integration.vendor,
        "label": integration.label,
        "state": state_of(integration, now),
        "headline": headline,
        "connected_at": when(integration.created_at),
        "last_sync_at": when(last),
        "last_result": integration.last_result,
        "last_success_at": when(integration.last_success_at),
        "summary": report.get("summary"),
        "devices_synced": report.get("matches", 0),
        "matches": report.get("matches", 0),
        "matches_by_serial": by_serial,
        "matches_by_mac": report.get("matches_by_mac", 0),
        "matching": matching,
        "ambiguous_macs": report.get("ambiguous_macs", 0),
        "max_agent_age": format_duration(integration.max_agent_age) if integration.max_agent_age is not None else None,
        "agents_stale": report.get("agents_stale", 0),
        "stale_matches": report.get("stale_matches", 0),
        "devices_with_identity": report.get("devices_with_identity", 0),
        "devices_without_identity": report.get("devices_without_identity", 0),
        "agents": report.get("agents", 0),
        "agents_without_serial": report.get("agents_without_serial", 0),
        "duplicate_serials_resolved": report.get("duplicate_serials_resolved", 0),
        "last_changes": {"set": report.get("sets", 0), "deleted": report.get("deletes", 0)},
        "last_error": integration.last_error,
        "paused_until": when(integration.paused_until),
        "pause_reason": integration.pause_reason,
        "next_sync": "as soon as the scheduler runs" if integration.sync_requested_at else None,
    }
