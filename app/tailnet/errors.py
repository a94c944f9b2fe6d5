"""Typed errors of the tailnet layer; each carries a message fit to show a person."""

from __future__ import annotations


class TailnetError(Exception):
    """Base of every tailnet error. ``status`` is the HTTP status an API would answer with."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidRequest(TailnetError):
    """The request is malformed (HTTP 400)."""

    status = 400


class RuleViolation(InvalidRequest):
    """A key, value, expiry or comment breaks one of the attribute rules (HTTP 400), checked locally."""

    status = 400

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class AuthenticationError(TailnetError):
    """Credentials are missing, wrong or expired (HTTP 401)."""

    status = 401


class PermissionDenied(TailnetError):
    """Authenticated, but not allowed to do this (HTTP 403)."""

    status = 403


class DeviceNotFound(TailnetError):
    """No such device (HTTP 404)."""

    status = 404


class NotFound(TailnetError):
    """No such resource (HTTP 404)."""

    status = 404


class RateLimited(TailnetError):
    """The API answered 429 and retries ran out."""

    status = 429


class TailnetUnavailable(TailnetError):
    """The API failed (5xx, timeout, connection error) and retries ran out."""

    status = 503
