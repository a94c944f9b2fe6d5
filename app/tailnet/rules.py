"""The posture attribute rules (README: "Attribute rules"), shared by both adapters and the HTTP API.

Each check raises ``RuleViolation`` whose ``rule`` names the rule and whose message says what is wrong.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from app.core.timefmt import ZERO_TIME, format_rfc3339, parse_rfc3339
from app.tailnet.errors import RuleViolation
from app.tailnet.models import CUSTOM_NAMESPACE, AttributeValue

MAX_KEY_LENGTH = 50
"""The built-in store's key length limit (its documented seed rule)."""
TAILSCALE_MAX_KEY_LENGTH = 128
"""The key length limit of Tailscale's current OpenAPI document (``attributeKey``: ``maxLength: 128``); the
Tailscale adapter checks only this, so it never refuses locally what the real API accepts."""
MAX_STRING_LENGTH = 50
MAX_TRUSTED_STRING_LENGTH = 100
MAX_COMMENT_LENGTH = 200
MAX_SAFE_INTEGER = 2**53 - 1

READ_ONLY_NAMESPACES = frozenset({"node", "ip"})
"""Namespaces derived by the tailnet itself; nobody writes them."""

_KEY_CHARS = re.compile(r"[A-Za-z0-9_:]+")
_KEY_SHAPE = re.compile(r"([A-Za-z0-9_]+):([A-Za-z0-9_:]+)")
_STRING_CHARS = re.compile(r"[A-Za-z0-9_.]+")

STRING, NUMBER, BOOLEAN = "string", "number", "boolean"
_ZERO_INSTANT = datetime(1, 1, 1, tzinfo=UTC)


def namespace_of(key: str) -> str:
    """The part of ``key`` before the first ``:``."""
    return key.split(":", 1)[0]


def validate_key(
    key: Any,
    allowed_namespaces: frozenset[str] = frozenset({CUSTOM_NAMESPACE}),
    *,
    max_length: int = MAX_KEY_LENGTH,
) -> str:
    """Check an attribute key's length (at most ``max_length``), characters, shape and namespace; return its
    namespace."""
    if not isinstance(key, str) or not key:
        raise RuleViolation("attribute key must be a non-empty string", rule="key_required")
    if len(key) > max_length:
        raise RuleViolation(
            f"attribute key {key[:60]!r} is {len(key)} characters long; at most {max_length} are "
            "allowed, including the namespace",
            rule="key_length",
        )
    if not _KEY_CHARS.fullmatch(key):
        bad = sorted({ch for ch in key if not (ch.isascii() and (ch.isalnum() or ch in "_:"))})
        raise RuleViolation(
            f"attribute key {key!r} contains {', '.join(repr(ch) for ch in bad)}; only letters, digits, "
            "'_' and ':' are allowed",
            rule="key_charset",
        )
    if not _KEY_SHAPE.fullmatch(key):
        raise RuleViolation(
            f"attribute key {key!r} must have the form namespace:name, e.g. custom:prodAccess",
            rule="key_shape",
        )
    namespace = namespace_of(key)
    if namespace in READ_ONLY_NAMESPACES:
        raise RuleViolation(
            f"attribute key {key!r} is in the read-only '{namespace}:' namespace, which the tailnet derives "
            "itself; use a custom: key",
            rule="key_namespace",
        )
    if namespace not in allowed_namespaces:
        if namespace.lower() == CUSTOM_NAMESPACE:
            hint = f"; namespaces are case-sensitive, write custom:{key.split(':', 1)[1]}"
        else:
            hint = f"; '{namespace}:' attributes are written only by their integration"
        raise RuleViolation(
            f"attribute key {key!r} is not in the custom: namespace{hint}",
            rule="key_namespace",
        )
    return namespace


def value_type(value: AttributeValue) -> str:
    """``string``, ``number`` or ``boolean``."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return NUMBER
    return STRING


def validate_value(value: Any, namespace: str = CUSTOM_NAMESPACE) -> AttributeValue:
    """Check a value: boolean; integer with |n| ≤ 2^53-1; or a string of the allowed characters.

    ``custom:`` strings are at most 50 letters, digits, ``_`` and ``.``. Trusted integrations' own
    namespaces keep the vendor's values verbatim (``Non Compliant``): printable text of at most 100.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            sign = "-" if value < 0 else ""
            shown = str(value) if value.bit_length() <= 128 else f"{sign}2^{value.bit_length() - 1}+"  # no 5000 digits
            raise RuleViolation(
                f"number {shown} is out of range; numbers must be integers between -{MAX_SAFE_INTEGER} "
                f"and {MAX_SAFE_INTEGER} (2^53 - 1)",
                rule="value_number_range",
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RuleViolation(f"number {value} is not finite; numbers must be integers", rule="value_number")
        raise RuleViolation(f"number {value!r} is not an integer; numbers must be whole numbers", rule="value_number")
    if isinstance(value, str):
        if namespace == CUSTOM_NAMESPACE:
            return _validate_custom_string(value)
        if not value or len(value) > MAX_TRUSTED_STRING_LENGTH or not value.isprintable():
            raise RuleViolation(
                f"string value {value[:60]!r} must be 1 to {MAX_TRUSTED_STRING_LENGTH} printable characters",
                rule="value_string",
            )
        return value
    kind = "null" if value is None else type(value).__name__
    raise RuleViolation(f"attribute value must be a string, a number or a boolean, not {kind}", rule="value_type")


def _validate_custom_string(value: str) -> str:
    if not value:
        raise RuleViolation("string value must not be empty", rule="value_string_empty")
    if len(value) > MAX_STRING_LENGTH:
        raise RuleViolation(
            f"string value is {len(value)} characters long; at most {MAX_STRING_LENGTH} are allowed",
            rule="value_string_length",
        )
    if not _STRING_CHARS.fullmatch(value):
        bad = sorted({ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch in "_."))})
        raise RuleViolation(
            f"string value {value!r} contains {', '.join(repr(ch) for ch in bad)}; only letters, digits, "
            "'_' and '.' are allowed",
            rule="value_string_charset",
        )
    return value


def validate_expiry(expiry: datetime | None, now: datetime) -> datetime | None:
    """An expiry must lie in the future; ``None`` means the attribute never expires."""
    if expiry is None:
        return None
    if expiry.tzinfo is None:
        raise RuleViolation("expiry must carry a time zone", rule="expiry_format")
    if expiry <= now:
        raise RuleViolation(
            f"expiry {format_rfc3339(expiry)} is not in the future (now is {format_rfc3339(now)})",
            rule="expiry_past",
        )
    return expiry


def parse_expiry_field(raw: Any) -> datetime | None:
    """Read an API ``expiry`` field: absent, ``""`` or the zero time mean none; else RFC 3339."""
    if raw is None or raw == "" or raw == ZERO_TIME:
        return None
    if not isinstance(raw, str):
        raise RuleViolation("expiry must be an RFC 3339 timestamp string", rule="expiry_format")
    try:
        parsed = parse_rfc3339(raw)
    except ValueError as exc:
        raise RuleViolation(str(exc), rule="expiry_format") from None
    if parsed == _ZERO_INSTANT:  # the zero time written another way, e.g. 0001-01-01T00:00:00.000+00:00
        return None
    return parsed


def validate_comment(comment: Any) -> str | None:
    """A comment is optional (``""`` means none) and at most 200 characters."""
    if comment is None or comment == "":
        return None
    if not isinstance(comment, str):
        raise RuleViolation("comment must be a string", rule="comment_type")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise RuleViolation(
            f"comment is {len(comment)} characters long; at most {MAX_COMMENT_LENGTH} are allowed",
            rule="comment_length",
        )
    if "\x00" in comment or not _is_utf8(comment):
        raise RuleViolation("comment contains a NUL character or invalid Unicode", rule="comment_text")
    return comment


def _is_utf8(text: str) -> bool:
    """Whether ``text`` can be stored as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_key_registry(key: str, new_type: str, existing_key: str | None, existing_type: str | None) -> None:
    """Case-insensitive uniqueness and one type per key across the tailnet.

    ``existing_key``/``existing_type`` describe the key already in the tailnet that folds to the same
    lower-case spelling, if any.
    """
    if existing_key is None:
        return
    if existing_key != key:
        raise RuleViolation(
            f"attribute key {key!r} conflicts with existing key {existing_key!r}; keys are unique regardless of case",
            rule="key_case_conflict",
        )
    if existing_type is not None and existing_type != new_type:
        raise RuleViolation(
            f"attribute {key!r} holds {existing_type} values in this tailnet; a {new_type} cannot be written to it",
            rule="value_type_conflict",
        )


def fold_key(key: str) -> str:
    """The case-insensitive form of a key, for uniqueness."""
    return key.casefold()


def parse_cli_value(text: str, *, force_string: bool = False) -> AttributeValue:
    """CLI value syntax: ``true``/``false`` → boolean, an integer → number, else string."""
    if force_string:
        return text
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text
