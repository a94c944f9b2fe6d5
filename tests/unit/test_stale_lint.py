"""``posture lint`` and the freshness marker ``<namespace>:stale``: only ``NOT SET`` requires a fresh agent."""

from __future__ import annotations

import pytest

from app.posture.known import known_attribute, stale_marker
from app.posture.lint import Finding, lint
from app.posture.policy import parse_policy


def findings_of(*conditions: str) -> list[Finding]:
    listed = ",\n".join(f'      "{c}"' for c in conditions)
    text = (
        '{\n  "postures": {\n    "posture:p": [\n'
        + listed
        + '\n    ],\n  },\n  "grants": [{"src": ["*"], "dst": ["*"], "srcPosture": ["posture:p"]}],\n}\n'
    )
    return lint(parse_policy(text))


def test_every_vendor_has_a_known_boolean_marker_in_both_forms() -> None:
    for key, label in (
        ("huntress:stale", "Huntress"),
        ("custom:huntress_stale", "Huntress"),
        ("sentinelOne:stale", "SentinelOne"),
        ("custom:sentinelOne_stale", "SentinelOne"),
    ):
        attribute = known_attribute(key)
        assert attribute is not None and attribute.type == "boolean", key
        assert stale_marker(key) == label
    assert stale_marker("huntress:firewallStatus") is None


def test_not_set_is_the_guard_and_gets_no_finding() -> None:
    assert findings_of("huntress:stale NOT SET", "custom:sentinelOne_stale NOT SET") == []


@pytest.mark.parametrize(
    "condition",
    ["huntress:stale == false", "huntress:stale != true", "custom:huntress_stale NOT IN [true]"],
)
def test_a_guard_that_never_matches_is_a_warning(condition: str) -> None:
    (finding,) = findings_of(condition)
    assert finding.level == "warning"
    assert "is never false" in finding.message and "the condition never matches" in finding.message
    assert finding.message.endswith("NOT SET'")
    assert (finding.line, finding.column) == (4, 8)  # the key


@pytest.mark.parametrize(
    "condition",
    ["huntress:stale == true", "huntress:stale IS SET", "huntress:stale != false", "huntress:stale IN [true]"],
)
def test_a_condition_admitting_stale_devices_is_a_warning(condition: str) -> None:
    (finding,) = findings_of(condition)
    assert "admits exactly those devices" in finding.message
    assert "write 'huntress:stale NOT SET'" in finding.message


def test_a_literal_of_the_wrong_type_gets_the_type_warning() -> None:
    (finding,) = findings_of("huntress:stale == 'false'")
    assert "huntress:stale is a boolean, but 'false' is a string" in finding.message
