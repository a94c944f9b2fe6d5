"""Reading a request API call's JSON body: its size, its content type, its fields."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from wsgiref.types import WSGIEnvironment

from app.core.timefmt import parse_duration, parse_rfc3339

MAX_BODY = 16 << 10
"""The largest body a call may send (a request is a few hundred bytes)."""
FIELDS = frozenset({"requester", "profile", "device", "duration", "reason", "approvers", "starts_at"})


class BodyError(Exception):
    """The body cannot be used: ``status`` is the HTTP status to answer, ``errors`` names fields."""

    def __init__(self, status: str, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def read_json(environ: WSGIEnvironment) -> dict[str, Any]:
    """The body as a JSON object (415 when not JSON, 413 when too large, 400 when malformed)."""
    kind = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise BodyError("415 Unsupported Media Type", "send the body as JSON with Content-Type: application/json")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BodyError("400 Bad Request", "Content-Length is not a number") from None
    if length > MAX_BODY:
        raise BodyError("413 Content Too Large", f"the request body is larger than {MAX_BODY} bytes")
    data = environ["wsgi.input"].read(min(length, MAX_BODY + 1)) if length else b""
    if len(data) > MAX_BODY:
        raise BodyError("413 Content Too Large", f"the request body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError("400 Bad Request", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError("400 Bad Request", "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, errors: dict[str, str], *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            errors[name] = f"{name} is required"
        return None
    if not isinstance(value, str):
        errors[name] = f"{name} must be a string"
        return None
    return value


def duration_of(value: Any, errors: dict[str, str]) -> timedelta | None:
    """``"1h"`` (as the CLI's ``--duration``) or a number of seconds."""
    if isinstance(value, bool) or value is None:
        errors["duration"] = 'duration is required: "1h", "30m" or a number of seconds'
        return None
    if isinstance(value, int):
        if 0 < value <= 366 * 86400:
            return timedelta(seconds=value)
        errors["duration"] = "duration in seconds must be between 1 and a year"
        return None
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            errors["duration"] = str(exc)
            return None
    errors["duration"] = 'duration must be a string such as "1h" or a number of seconds'
    return None


def start_of(value: Any, errors: dict[str, str]) -> datetime | None:
    """Scheduled access: an RFC 3339 time (``None`` or absent: as soon as it is approved)."""
    if value is None:
        return None
    if not isinstance(value, str):
        errors["starts_at"] = 'starts_at must be an RFC 3339 time such as "2026-01-02T15:04:05Z"'
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        errors["starts_at"] = str(exc)
        return None


def request_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``POST /api/v1/requests``, checked for type; ``BodyError`` (400) naming each bad one."""
    errors = {name: "unknown field" for name in body if name not in FIELDS}
    fields: dict[str, Any] = {
        "requester": _text(body, "requester", errors, required=False),
        "profile": _text(body, "profile", errors),
        "device": _text(body, "device", errors),
        "reason": _text(body, "reason", errors),
        "duration": duration_of(body.get("duration"), errors),
    }
    approvers = body.get("approvers", [])
    if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers) or len(approvers) > 50:
        errors["approvers"] = "approvers must be a list of at most 50 Slack user ids"
        approvers = []
    fields["approvers"] = approvers
    fields["starts_at"] = start_of(body.get("starts_at"), errors)
    if errors:
        raise BodyError("400 Bad Request", "; ".join(f"{k}: {v}" for k, v in errors.items()), errors)
    return fields
