"""Checking a device's attributes against a policy: postures condition by condition, and the rules met."""

from __future__ import annotations

import json

from app.posture.check import check_device
from app.posture.policy import parse_policy

POLICY = """{
  "postures": {
    "posture:edr": [
      "huntress:defenderStatus == 'Protected'",
      "huntress:firewallStatus IN ['Enabled', 'Pending Isolation']",
      "sentinelOne:activeThreats <= 0",
      "sentinelOne:infected NOT SET",
    ],
    "posture:mac": ["node:os == 'macos'", "node:osVersion >= '14.2'"],
    "posture:broken": ["custom:x IS SET", "custom:y === 1"],
    "posture:open": [],
  },
  "defaultSrcPosture": ["posture:mac"],
  "grants": [
    {"src": ["autogroup:member"], "dst": ["tag:prod"], "srcPosture": ["posture:edr", "posture:mac"]},
    {"src": ["group:dev"], "dst": ["tag:dev"]},
    {"src": ["group:ops"], "dst": ["tag:ops"], "srcPosture": ["posture:broken", "posture:missing"]},
  ],
  "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:web:443"], "srcPosture": ["posture:open"]}],
}"""

FAILING = {
    "huntress:defenderStatus": "Unhealthy",
    "huntress:firewallStatus": "Enabled",
    "sentinelOne:activeThreats": 2,
    "node:os": "windows",
    "node:osVersion": "10.0.22631",
    "custom:x": True,
}


def test_a_failing_device_is_explained_condition_by_condition() -> None:
    result = check_device(parse_policy(POLICY), FAILING)
    edr = result.posture("posture:edr")
    assert edr is not None and not edr.passed and edr.errors == ()
    assert [(c.condition.key, c.passed, c.is_set, c.actual) for c in edr.conditions] == [
        ("huntress:defenderStatus", False, True, "Unhealthy"),
        ("huntress:firewallStatus", True, True, "Enabled"),
        ("sentinelOne:activeThreats", False, True, 2),
        ("sentinelOne:infected", True, False, None),
    ]
    assert "Unhealthy" in edr.conditions[0].reason and "'Protected'" in edr.conditions[0].reason
    mac = result.posture("posture:mac")
    assert mac is not None and not mac.passed
    assert [c.passed for c in mac.conditions] == [False, False]


def test_a_posture_with_a_syntax_error_fails_and_lists_the_error() -> None:
    result = check_device(parse_policy(POLICY), FAILING)
    broken = result.posture("posture:broken")
    assert broken is not None and not broken.passed
    assert [c.passed for c in broken.conditions] == [True]  # the parsable condition is still evaluated
    (error,) = broken.errors
    assert error.startswith("cannot parse 'custom:y === 1' at line 10, column 53: expected an operator")


def test_rules_any_posture_suffices_default_applies_and_undefined_never_passes() -> None:
    passing = dict(FAILING, **{"node:os": "macos", "node:osVersion": "14.10"})
    result = check_device(parse_policy(POLICY), passing)
    assert result.posture("posture:mac").passed  # type: ignore[union-attr]
    assert result.posture("posture:open").passed  # type: ignore[union-attr]  # no conditions: vacuously true
    prod, dev, ops, web = result.rules
    assert (prod.met, prod.via, prod.required, prod.passed) == (
        True,
        "srcPosture",
        ("posture:edr", "posture:mac"),
        ("posture:mac",),
    )
    assert (dev.met, dev.via, dev.required) == (True, "defaultSrcPosture", ("posture:mac",))
    assert (ops.met, ops.via, ops.undefined) == (False, "srcPosture", ("posture:missing",))
    assert (web.rule.kind, web.met) == ("acl", True)
    assert [r.rule.label for r in result.met_rules] == ["grants[0]", "grants[1]", "acls[0]"]

    failing = check_device(parse_policy(POLICY), FAILING)
    assert [r.rule.label for r in failing.met_rules] == ["acls[0]"]


def test_rules_without_any_posture_are_open() -> None:
    policy = parse_policy('{"grants": [{"src": ["*"], "dst": ["*"]}]}')
    (rule,) = check_device(policy, {}).rules
    assert (rule.met, rule.via, rule.required) == (True, "open", ())


def test_an_unset_attribute_fails_everything_but_not_set() -> None:
    policy = parse_policy('{"postures": {"posture:p": ["custom:a != 1", "custom:b NOT IN [1]", "custom:c NOT SET"]}}')
    result = check_device(policy, {}).posture("posture:p")
    assert result is not None and not result.passed
    assert [c.passed for c in result.conditions] == [False, False, True]


def test_a_malformed_posture_fails() -> None:
    policy = parse_policy('{"postures": {"posture:p": "custom:a IS SET"}}')
    result = check_device(policy, {"custom:a": 1}).posture("posture:p")
    assert result is not None and not result.passed and result.errors == ("posture:p is not a list of conditions",)


def test_to_json_is_json_ready() -> None:
    data = check_device(parse_policy(POLICY), FAILING).to_json()
    assert json.loads(json.dumps(data)) == data
    edr = data["postures"][0]
    assert edr["name"] == "posture:edr" and edr["passed"] is False
    assert edr["conditions"][0] == {
        "condition": "huntress:defenderStatus == 'Protected'",
        "key": "huntress:defenderStatus",
        "passed": False,
        "set": True,
        "actual": "Unhealthy",
        "reason": edr["conditions"][0]["reason"],
    }
    assert edr["conditions"][3]["actual"] is None and edr["conditions"][3]["set"] is False
    assert data["rules"][1]["srcPosture"] is None and data["rules"][1]["via"] == "defaultSrcPosture"
    assert data["rules"][2]["undefined"] == ["posture:missing"]
    assert data["attributes"] == FAILING
