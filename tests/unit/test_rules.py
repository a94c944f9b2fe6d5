"""Table-driven tests of the attribute rules (README: "Attribute rules"), with their boundaries."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from app.tailnet import rules
from app.tailnet.errors import RuleViolation
from tests.conftest import START

CUSTOM = frozenset({"custom"})
HUNTRESS = frozenset({"custom", "huntress"})


@pytest.mark.parametrize(
    ("key", "namespaces", "rule"),
    [
        ("custom:" + "a" * 43, CUSTOM, None),  # exactly 50 characters
        ("custom:" + "a" * 44, CUSTOM, "key_length"),  # 51 characters
        ("custom:prod_Access2", CUSTOM, None),
        ("custom:a:b", CUSTOM, None),
        ("", CUSTOM, "key_required"),
        (None, CUSTOM, "key_required"),
        ("custom:prod-access", CUSTOM, "key_charset"),
        ("custom:prod access", CUSTOM, "key_charset"),
        ("custom:prodAccéss", CUSTOM, "key_charset"),
        ("custom:", CUSTOM, "key_shape"),
        (":prodAccess", CUSTOM, "key_shape"),
        ("prodAccess", CUSTOM, "key_shape"),
        ("Custom:prodAccess", CUSTOM, "key_namespace"),
        ("huntress:firewallStatus", CUSTOM, "key_namespace"),
        ("huntress:firewallStatus", HUNTRESS, None),
        ("sentinelOne:activeThreats", HUNTRESS, "key_namespace"),
        ("node:os", HUNTRESS | {"node"}, "key_namespace"),
        ("ip:country", CUSTOM | {"ip"}, "key_namespace"),
    ],
)
def test_key_rules(key: object, namespaces: frozenset[str], rule: str | None) -> None:
    if rule is None:
        assert rules.validate_key(key, namespaces) == str(key).split(":", 1)[0]
    else:
        with pytest.raises(RuleViolation) as info:
            rules.validate_key(key, namespaces)
        assert info.value.rule == rule
        assert info.value.status == 400
        assert info.value.message


@pytest.mark.parametrize(
    ("value", "namespace", "rule"),
    [
        (True, "custom", None),
        (False, "custom", None),
        (0, "custom", None),
        (2**53 - 1, "custom", None),
        (-(2**53 - 1), "custom", None),
        (2**53, "custom", "value_number_range"),
        (-(2**53), "custom", "value_number_range"),
        (1.5, "custom", "value_number"),
        (1.0, "custom", "value_number"),
        (math.inf, "custom", "value_number"),
        (-math.inf, "custom", "value_number"),
        (math.nan, "custom", "value_number"),
        ("a" * 50, "custom", None),
        ("a" * 51, "custom", "value_string_length"),
        ("v1.2_beta", "custom", None),
        ("", "custom", "value_string_empty"),
        ("Non Compliant", "custom", "value_string_charset"),
        ("a-b", "custom", "value_string_charset"),
        ("a/b", "custom", "value_string_charset"),
        ("Non Compliant", "huntress", None),
        ("x" * 101, "huntress", "value_string"),
        ("bad\nline", "huntress", "value_string"),
        (None, "custom", "value_type"),
        ([1], "custom", "value_type"),
        ({"a": 1}, "custom", "value_type"),
    ],
)
def test_value_rules(value: object, namespace: str, rule: str | None) -> None:
    if rule is None:
        assert rules.validate_value(value, namespace) == value
    else:
        with pytest.raises(RuleViolation) as info:
            rules.validate_value(value, namespace)
        assert info.value.rule == rule


@pytest.mark.parametrize(
    ("value", "kind"), [(True, "boolean"), (False, "boolean"), (0, "number"), (7, "number"), ("x", "string")]
)
def test_value_type_keeps_booleans_apart_from_numbers(value: object, kind: str) -> None:
    assert rules.value_type(value) == kind  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offset", "rule"),
    [
        (timedelta(seconds=1), None),
        (timedelta(days=365), None),
        (timedelta(0), "expiry_past"),
        (timedelta(seconds=-1), "expiry_past"),
    ],
)
def test_expiry_must_be_in_the_future(offset: timedelta, rule: str | None) -> None:
    if rule is None:
        assert rules.validate_expiry(START + offset, START) == START + offset
    else:
        with pytest.raises(RuleViolation) as info:
            rules.validate_expiry(START + offset, START)
        assert info.value.rule == rule


def test_no_expiry_is_allowed() -> None:
    assert rules.validate_expiry(None, START) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("0001-01-01T00:00:00Z", None),
        ("2026-11-21T13:00:00Z", START + timedelta(hours=1)),
        ("2026-11-21T13:00:00+00:00", START + timedelta(hours=1)),
        ("2026-11-21T14:00:00+01:00", START + timedelta(hours=1)),
        ("2026-11-21T13:00:00.250Z", START + timedelta(hours=1, milliseconds=250)),
    ],
)
def test_expiry_field_forms(raw: object, expected: object) -> None:
    assert rules.parse_expiry_field(raw) == expected


@pytest.mark.parametrize("raw", ["tomorrow", "2026-11-21T13:00:00", 1700000000, "2026-13-01T00:00:00Z"])
def test_expiry_field_rejects_bad_forms(raw: object) -> None:
    with pytest.raises(RuleViolation) as info:
        rules.parse_expiry_field(raw)
    assert info.value.rule == "expiry_format"


@pytest.mark.parametrize(
    ("comment", "expected", "rule"),
    [
        (None, None, None),
        ("", None, None),
        ("c" * 200, "c" * 200, None),
        ("c" * 201, None, "comment_length"),
        (5, None, "comment_type"),
    ],
)
def test_comment_rules(comment: object, expected: object, rule: str | None) -> None:
    if rule is None:
        assert rules.validate_comment(comment) == expected
    else:
        with pytest.raises(RuleViolation) as info:
            rules.validate_comment(comment)
        assert info.value.rule == rule


@pytest.mark.parametrize(
    ("key", "kind", "existing", "existing_type", "rule"),
    [
        ("custom:a", "boolean", None, None, None),
        ("custom:a", "boolean", "custom:a", "boolean", None),
        ("custom:MyAttr", "boolean", "custom:myattr", "boolean", "key_case_conflict"),
        ("custom:a", "string", "custom:a", "boolean", "value_type_conflict"),
        ("custom:a", "number", "custom:a", "boolean", "value_type_conflict"),
    ],
)
def test_key_registry(key: str, kind: str, existing: str | None, existing_type: str | None, rule: str | None) -> None:
    if rule is None:
        rules.check_key_registry(key, kind, existing, existing_type)
    else:
        with pytest.raises(RuleViolation) as info:
            rules.check_key_registry(key, kind, existing, existing_type)
        assert info.value.rule == rule


@pytest.mark.parametrize(
    ("text", "force", "expected"),
    [
        ("true", False, True),
        ("false", False, False),
        ("True", False, "True"),
        ("42", False, 42),
        ("-7", False, -7),
        ("4.2", False, "4.2"),
        ("42", True, "42"),
        ("true", True, "true"),
        ("prod", False, "prod"),
    ],
)
def test_cli_value_parsing(text: str, force: bool, expected: object) -> None:
    parsed = rules.parse_cli_value(text, force_string=force)
    assert parsed == expected
    assert type(parsed) is type(expected)
