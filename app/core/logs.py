"""Process logging: human-readable text or one JSON object per line (``LOG_FORMAT``), secrets redacted.

``configure_logging`` is called once by each entry point (``accessbot serve``, ``worker``, ``tailnet serve`` and
the WSGI application). Every record passes ``RedactingFilter`` on its way out, which masks anything that looks
like a credential (Slack and Tailscale tokens, ``Authorization`` headers, Basic/Bearer/ApiToken credentials,
passwords in URLs and forms) as a defence in depth: code must still never log secrets on purpose.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Protocol

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "***"

_HANDLER_MARK = "_accessbot_handler"
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# (pattern, replacement): the replacement keeps the part that says what was there, never the secret.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # an Authorization header in any spelling: "Authorization: Bearer x", "'authorization': 'Basic x'", ...
    (
        re.compile(
            r"""(?i)(\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|apitoken|token)\s+)?[^\s"',;}]+"""
        ),
        rf"\g<1>{REDACTED}",
    ),
    # a Bearer/Basic/ApiToken credential: 8+ token characters with a digit or + / =, or 16+ of them (not a word)
    (
        re.compile(r"\b(Bearer|Basic|ApiToken)(\s+)(?:(?=[\w.~+/=-]*[0-9+/=])[\w.~+/=-]{8,}|[\w.~+/=-]{16,})"),
        rf"\g<1>\g<2>{REDACTED}",
    ),
    (re.compile(r"\bxox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]+"), REDACTED),  # Slack bot, user, refresh tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),  # Slack app-level tokens
    (re.compile(r"\btskey-[A-Za-z0-9-]+"), REDACTED),  # Tailscale API keys, OAuth client secrets, auth keys
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s/@]+@"), rf"\g<1>{REDACTED}@"),  # user:password@ in URLs
    (
        re.compile(
            r"""(?i)(\b(?:client_secret|password|passwd|api_secret|api_token|secret_key|access_token|refresh_token)"""
            r"""\b["']?\s*[:=]\s*["']?)[^\s"'&,;}]+"""
        ),
        rf"\g<1>{REDACTED}",
    ),
)


# names of fields whose whole value is a secret (a header, a form field or a logging ``extra`` key)
_SECRET_KEY = re.compile(r"(?i)authorization|passw(or)?d|secret|token|api[_-]?key|cookie|credential")


def redact_secrets(text: str) -> str:
    """``text`` with every value that looks like a credential replaced by ``***``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, key: object = None) -> Any:
    if isinstance(key, str) and _SECRET_KEY.search(key) and isinstance(value, str | bytes) and value:
        return REDACTED
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(item, k) for k, item in value.items()}
    if isinstance(value, list):
        return [_redact_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact_value(item) for item in value)
    return value


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes a caller added with ``extra=``: everything that is not a standard ``LogRecord`` field."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES and key[:1] != "_"}


class RedactingFilter(logging.Filter):
    """Masks credentials in the message, its arguments, the exception text and ``extra`` values (whole values
    of fields named like a secret: ``authorization``, ``password``, ``*token*``, ``api_key``...).

    The record is changed in place (the message is rendered once and its arguments dropped), so every handler
    after this one sees the redacted text.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record``; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error reporting
            return True
        record.msg, record.args = redact_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, _redact_value(value, key))
        return True


def rfc3339(timestamp: float) -> str:
    """A POSIX timestamp as RFC 3339 in UTC with milliseconds, e.g. ``2026-11-21T12:00:00.123Z``."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``exception``/``stack`` when
    present, then the record's ``extra`` fields (which never replace the standard ones)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON (non-ASCII and newlines escaped)."""
        data: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        for key, value in extra_fields(record).items():
            data.setdefault(key, value)
        return json.dumps(data, default=str)


class LogSettings(Protocol):
    """What ``configure_logging`` reads from ``app.config.settings.Settings``."""

    log_format: str
    log_level: str


def parse_log_format(value: str) -> str:
    """``text`` or ``json`` (any case); ``ValueError`` otherwise."""
    folded = value.strip().lower()
    if folded not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return folded


def parse_log_level(value: str) -> str:
    """A level name (any case, ``WARN`` = ``WARNING``); ``ValueError`` otherwise."""
    folded = value.strip().upper()
    folded = "WARNING" if folded == "WARN" else folded
    if folded not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return folded


def _resolve(source: LogSettings | Mapping[str, str] | None) -> tuple[str, str]:
    if source is None:
        source = os.environ
    if isinstance(source, Mapping):
        return parse_log_format(source.get("LOG_FORMAT", "text")), parse_log_level(source.get("LOG_LEVEL", "INFO"))
    return parse_log_format(source.log_format), parse_log_level(source.log_level)


def configure_logging(
    source: LogSettings | Mapping[str, str] | None = None, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as text or JSON at ``LOG_LEVEL``, redacted.

    ``source`` is the process settings, or a mapping of environment variables (default ``os.environ``).
    Calling it again replaces the handler it installed before; handlers installed by others are kept.
    Raises ``ValueError`` for an invalid ``LOG_FORMAT`` or ``LOG_LEVEL``.
    """
    log_format, level = _resolve(source)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.handlers.remove(handler)
    root.handlers.insert(0, handler)  # first, so its redaction reaches every other handler too
    root.setLevel(level)
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # not a line per migration check
    return handler
