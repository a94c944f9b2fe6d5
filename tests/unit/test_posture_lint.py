"""Policy loading, the known-attribute table and lint findings (with positions in the file)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from app.posture.known import known_attribute, known_namespaces, similar_keys, value_hint
from app.posture.lint import Finding, has_errors, lint
from app.posture.policy import PolicyError, load_policy, parse_policy

# -- policy loading --------------------------------------------------------------------------------------

POLICY = """\
{
  // who may reach production
  "postures": {
    "posture:trusted": [
      "huntress:firewallStatus == 'Enabled'",
      "sentinelOne:activeThreats ==",
    ],
    "posture:mac": ["node:os == 'macos'"],
  },
  "defaultSrcPosture": ["posture:mac"],
  "grants": [
    {"src": ["autogroup:member"], "dst": ["tag:prod"], "ip": ["*"], "srcPosture": ["posture:trusted"]},
    {"src": ["group:dev"], "dst": ["tag:dev"], "ip": ["*"]},
    {"src": ["group:ops"], "dst": ["tag:ops"], "ip": ["*"], "srcPosture": []},
  ],
  "acls": [
    {"action": "accept", "users": ["alice@example.com"], "ports": ["tag:db:5432"]},
  ],
  "ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]}],
}
"""


def test_policy_reads_postures_rules_and_default() -> None:
    policy = parse_policy(POLICY, "policy.hujson")
    assert policy.problems == () and policy.syntax_error is None
    assert list(policy.postures) == ["posture:trusted", "posture:mac"]
    trusted = policy.postures["posture:trusted"]
    assert (trusted.line, trusted.column) == (4, 5)
    first, second = trusted.conditions
    assert first.condition is not None and first.condition.key == "huntress:firewallStatus"
    assert (first.line, first.column) == (5, 7)
    # the syntax error is kept, at its place in the file: the end of the string (its closing quote)
    assert second.condition is None and second.syntax is not None
    assert (second.error_line, second.error_column) == (6, 36)
    assert "expected a value" in (second.error or "")
    assert trusted.errors == (second,)
    assert [r.name for r in policy.default_src_posture or ()] == ["posture:mac"]

    assert [(r.label, r.line) for r in policy.rules] == [
        ("grants[0]", 12),
        ("grants[1]", 13),
        ("grants[2]", 14),
        ("acls[0]", 17),
    ]
    grant = policy.grants[0]
    assert grant.src == ("autogroup:member",) and grant.dst == ("tag:prod",)
    assert [(r.name, r.line, r.column) for r in grant.src_posture or ()] == [("posture:trusted", 12, 84)]
    assert policy.grants[1].src_posture is None
    assert policy.grants[2].src_posture is None  # an empty srcPosture is none: the default applies
    acl = policy.acls[0]
    assert acl.src == ("alice@example.com",) and acl.dst == ("tag:db:5432",)  # legacy users/ports


def test_condition_error_columns_follow_escapes_in_the_file() -> None:
    # \u0027 is a quote written as an escape: the condition's column 12 is the file's column 25, not 18
    policy = parse_policy('{"postures": {"posture:a": ["custom:x == \\u0027open"]}}')
    entry = policy.postures["posture:a"].conditions[0]
    assert entry.text == "custom:x == 'open"
    assert entry.syntax is not None and entry.syntax.column == 13
    assert (entry.error_line, entry.error_column) == (1, 42)
    assert entry.position(1) == (1, 30)


def test_structural_problems_are_kept_and_the_rest_still_read() -> None:
    text = """{
  "postures": {"trusted": ["custom:x IS SET"], "posture:b": "custom:y IS SET", "posture:c": [42]},
  "grants": [{"src": ["*"], "srcPosture": ["trusted", 7]}, "not a rule"],
  "acls": {"oops": true},
  "defaultSrcPosture": "posture:b",
}"""
    policy = parse_policy(text, "p.hujson")
    messages = [(p.line, p.column, p.message) for p in policy.problems]
    assert (2, 16, "posture name 'trusted' must look like posture:name") in messages
    assert any(m.startswith("posture:b must be a list of condition strings") for _, _, m in messages)
    assert any("srcPosture: 'trusted' is not a posture name" in m for _, _, m in messages)
    assert any("grants[0].srcPosture must hold posture names, not a number" in m for _, _, m in messages)
    assert any("grants[1] must be an object, not a string" in m for _, _, m in messages)
    assert any("acls must be a list of rules, not an object" in m for _, _, m in messages)
    assert any("defaultSrcPosture must be a list of posture names, not a string" in m for _, _, m in messages)
    assert policy.postures["posture:b"].malformed
    bad = policy.postures["posture:c"].conditions[0]
    assert bad.condition is None and bad.error == "a condition must be a string, not a number"
    assert len(policy.grants) == 1


def test_bad_hujson_is_kept_by_parse_policy_and_raised_by_load_policy(tmp_path: Path) -> None:
    text = '{\n  "postures": {\n    "posture:a": ["custom:x IS SET"]\n    "posture:b": []\n  }\n}'
    policy = parse_policy(text, "p.hujson")
    assert policy.syntax_error is not None
    assert [(p.level, p.line, p.column) for p in policy.problems] == [("error", 4, 5)]
    path = tmp_path / "policy.hujson"
    path.write_text(text)
    with pytest.raises(PolicyError, match=r"policy\.hujson: line 4, column 5: expected ',' or '}'"):
        load_policy(path)
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.hujson")
    path.write_bytes(b'{"postures": {"posture:\xff": []}}')
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)
    path.write_text(POLICY)
    assert load_policy(path).source == str(path)


def test_a_top_level_that_is_not_an_object_is_an_error() -> None:
    policy = parse_policy("[1, 2]")
    assert [(p.line, p.column, p.message) for p in policy.problems] == [
        (1, 1, "the policy file must be an object, not a list")
    ]


# -- the known-attribute table ---------------------------------------------------------------------------


def test_known_attributes_cover_built_ins_vendors_and_their_custom_forms() -> None:
    assert known_namespaces() >= {"node", "ip", "custom", "huntress", "sentinelOne"}
    os_attr = known_attribute("node:os")
    assert os_attr is not None and "illumos" in os_attr.values and "js" in os_attr.values
    assert known_attribute("node:tsStateEncrypted").type == "boolean"  # type: ignore[union-attr]
    assert known_attribute("node:osVersion").version  # type: ignore[union-attr]
    assert known_attribute("sentinelOne:activeThreats").type == "number"  # type: ignore[union-attr]
    mapped = known_attribute("custom:huntress_defenderPolicyStatus")
    assert mapped is not None and "Non_Compliant" in mapped.values and "Non Compliant" not in mapped.values
    assert known_attribute("huntress:firewallstatus") is None  # keys are case-sensitive
    assert similar_keys("huntress:firewallstatus") == ["huntress:firewallStatus"]


def test_value_hints_beat_string_similarity() -> None:
    allowed = list(known_attribute("huntress:defenderStatus").values)  # type: ignore[union-attr]
    assert difflib.get_close_matches("Healthy", allowed, n=1) == ["Unhealthy"]  # the opposite of what is meant
    assert value_hint("huntress:defenderStatus", "Healthy") == "Protected"
    assert value_hint("huntress:defenderStatus", "healthy") == "Protected"
    assert value_hint("custom:huntress_defenderStatus", "Healthy") == "Protected"
    assert value_hint("custom:huntress_firewallStatus", "Pending Isolation") == "Pending_Isolation"
    assert value_hint("huntress:firewallStatus", "enabled") == "Enabled"
    assert value_hint("huntress:firewallStatus", "Isolatd") == "Isolated"
    assert value_hint("huntress:firewallStatus", "Enabled") is None
    assert value_hint("sentinelOne:operationalState", "healthy") == "na"
    assert value_hint("custom:unknown", "x") is None


# -- lint ------------------------------------------------------------------------------------------------


def policy_with(*conditions: str, extra: str = "") -> str:
    listed = ",\n".join(f'      "{c}"' for c in conditions)
    return (
        '{\n  "postures": {\n    "posture:p": [\n'
        + listed
        + '\n    ],\n  },\n  "grants": [{"src": ["*"], "dst": ["*"], "srcPosture": ["posture:p"]}],'
        + extra
        + "\n}\n"
    )


def findings_of(*conditions: str) -> list[Finding]:
    return lint(parse_policy(policy_with(*conditions)))


def test_seed_000_healthy_is_a_warning_suggesting_protected() -> None:
    (finding,) = findings_of("huntress:defenderStatus == 'Healthy'")
    assert finding.level == "warning"
    assert (finding.line, finding.column) == (4, 35)  # the literal 'Healthy'
    assert "'Healthy' is not a value of huntress:defenderStatus" in finding.message
    assert finding.message.endswith("did you mean 'Protected'?")
    assert "Unhealthy'?" not in finding.message


def test_a_value_on_the_mapped_custom_key_gets_the_mapped_spelling() -> None:
    (finding,) = findings_of("custom:huntress_defenderPolicyStatus IN ['Compliant', 'Non Compliant']")
    assert "'Non Compliant' is not a value of custom:huntress_defenderPolicyStatus" in finding.message
    assert finding.message.endswith("did you mean 'Non_Compliant'?")


def test_a_negated_condition_with_an_unknown_value_always_holds() -> None:
    (finding,) = findings_of("huntress:firewallStatus != 'Isolatd'")
    assert "always holds" in finding.message and "did you mean 'Isolated'?" in finding.message


def test_unknown_keys_and_namespaces_get_suggestions() -> None:
    key, namespace, custom, other = findings_of(
        "huntress:firewallstatus == 'Enabled'",
        "sentinelone:infected == false",
        "custom:huntress_firewallstatus == 'Enabled'",
        "acme:score > 3",
    )
    assert key.level == "warning" and (key.line, key.column) == (4, 8)
    assert key.message == "unknown attribute huntress:firewallstatus; did you mean 'huntress:firewallStatus'?"
    assert (
        namespace.message
        == "unknown namespace 'sentinelone' in sentinelone:infected; did you mean 'sentinelOne:infected'?"
    )
    assert "custom:huntress_firewallstatus (no integration writes it)" in custom.message
    assert custom.message.endswith("did you mean 'custom:huntress_firewallStatus'?")
    assert other.message == "unknown namespace 'acme' in acme:score"


def test_the_tailnets_own_custom_attributes_are_not_flagged() -> None:
    assert findings_of("custom:prodAccess == true", "custom:tier IN ['gold', 'silver']") == []


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("sentinelOne:activeThreats == '0'", "sentinelOne:activeThreats is a number, but '0' is a string"),
        ("sentinelOne:infected == 1", "sentinelOne:infected is a boolean, but 1 is a number"),
        ("huntress:firewallStatus == true", "huntress:firewallStatus is a string, but true is a boolean"),
        ("node:tsAutoUpdate IN [true, 'false']", "node:tsAutoUpdate is a boolean, but 'false' is a string"),
    ],
)
def test_a_literal_of_the_wrong_type_is_a_warning(condition: str, fragment: str) -> None:
    (finding,) = findings_of(condition)
    assert finding.level == "warning" and fragment in finding.message


def test_wrong_type_suggestions() -> None:
    threats, infected = findings_of("sentinelOne:activeThreats == '0'", "sentinelOne:infected == 1")
    assert threats.message.endswith("did you mean 0?")
    assert infected.message.endswith("did you mean true?")


def test_ordered_comparisons_on_strings() -> None:
    quoted, number, version = findings_of(
        "huntress:firewallStatus > 'Enabled'",
        "huntress:firewallStatus >= 2",
        "sentinelOne:agentVersion >= 22",
    )
    # the condition parser refuses an ordered comparison with a string outright: Tailscale would too
    assert quoted.level == "error" and (quoted.line, quoted.column) == (4, 34)
    assert "ordered comparisons" in quoted.message
    assert number.level == "warning"
    assert "ordered comparison >= on huntress:firewallStatus, which holds strings" in number.message
    assert version.level == "warning" and "which holds versions" in version.message


def test_version_attributes_may_be_ordered() -> None:
    assert findings_of("node:osVersion >= '14.2'", "node:tsVersion < '1.80'") == []


def test_country_codes_are_capital_alpha_2() -> None:
    (finding,) = findings_of("ip:country IN ['CA', 'de']")
    assert "'de' is not an ISO 3166-1 alpha-2 code" in finding.message and "did you mean 'DE'?" in finding.message


def test_bad_syntax_is_an_error_with_its_column_and_what_was_expected() -> None:
    (finding,) = findings_of("node:os = 'macos'")
    assert finding.level == "error"
    assert (finding.line, finding.column) == (4, 16)
    assert finding.message.startswith("posture:p: expected an operator")
    assert "found '='" in finding.message


def test_undefined_posture_is_an_error_and_unused_posture_a_warning() -> None:
    text = """{
  "postures": {
    "posture:trusted": ["custom:x IS SET"],
    "posture:spare": ["custom:y IS SET"],
  },
  "grants": [{"src": ["*"], "dst": ["*"], "srcPosture": ["posture:trustd"]}],
  "defaultSrcPosture": ["posture:trusted", "posture:other"],
}"""
    findings = lint(parse_policy(text))
    assert [(f.level, f.line, f.column, f.message) for f in findings] == [
        ("warning", 4, 5, "posture:spare is defined but no grant, acl or defaultSrcPosture uses it"),
        ("error", 6, 58, "posture:trustd is not defined in postures; did you mean 'posture:trusted'?"),
        ("error", 7, 44, "posture:other is not defined in postures"),
    ]
    assert has_errors(findings)


def test_empty_posture_and_duplicate_keys_are_warnings() -> None:
    text = '{"postures": {"posture:p": []}, "grants": [{"srcPosture": ["posture:p"]}], "grants": []}'
    findings = lint(parse_policy(text))
    assert [f.message for f in findings] == [
        "posture:p has no conditions: every device meets it",
        "posture:p is defined but no grant, acl or defaultSrcPosture uses it",
        "duplicate key 'grants': only the last one counts",
    ]
    assert not has_errors(findings)


def test_bad_hujson_is_one_error_finding() -> None:
    findings = lint(parse_policy('{"postures": {"posture:p": ["custom:x IS SET"],, }}'))
    assert findings == [Finding("error", 1, 48, "expected a string key or '}', found ','")]


def test_a_clean_policy_has_no_findings() -> None:
    assert lint(parse_policy(POLICY.replace("sentinelOne:activeThreats ==", "sentinelOne:activeThreats == 0"))) == []


def test_findings_format_as_file_line_column() -> None:
    assert Finding("error", 3, 7, "boom").format("p.hujson") == "p.hujson:3:7: error: boom"
