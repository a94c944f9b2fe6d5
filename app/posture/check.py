"""Check one device's attributes against a policy: every posture, condition by condition, and the rules it meets.

A posture passes when all of its conditions hold (one that does not parse fails it). A rule's ``srcPosture``
is met when the device passes any one of the postures listed; a rule without one uses ``defaultSrcPosture``;
a rule with neither is open (posture plays no part). A posture that is referenced but not defined is never
passed (Tailscale would refuse such a file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.posture.expr import evaluate
from app.posture.model import PostureResult
from app.posture.policy import Policy, PostureDef, Rule
from app.tailnet.models import AttributeValue

Via = Literal["srcPosture", "defaultSrcPosture", "open"]


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """Whether the device meets one rule's posture requirement, and through which postures."""

    rule: Rule
    met: bool
    via: Via
    required: tuple[str, ...] = ()
    """The postures of which any one suffices (empty for an open rule)."""
    passed: tuple[str, ...] = ()
    """Those of ``required`` the device passes."""
    undefined: tuple[str, ...] = ()
    """Those of ``required`` the policy does not define."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        rule = self.rule
        return {
            "kind": rule.kind,
            "index": rule.index,
            "line": rule.line,
            "src": list(rule.src),
            "dst": list(rule.dst),
            "srcPosture": None if rule.src_posture is None else [r.name for r in rule.src_posture],
            "via": self.via,
            "postures": list(self.required),
            "met": self.met,
            "metBy": list(self.passed),
            "undefined": list(self.undefined),
        }


@dataclass(frozen=True, slots=True)
class DeviceCheck:
    """Every posture of the policy evaluated against one device, and every rule's verdict."""

    postures: tuple[PostureResult, ...]
    rules: tuple[RuleCheck, ...]
    attributes: dict[str, AttributeValue] = field(default_factory=dict)

    def posture(self, name: str) -> PostureResult | None:
        """The result of posture ``name`` (``None`` if the policy does not define it)."""
        return next((p for p in self.postures if p.name == name), None)

    @property
    def met_rules(self) -> tuple[RuleCheck, ...]:
        """The rules whose posture requirement the device meets."""
        return tuple(r for r in self.rules if r.met)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: attributes, postures (with per-condition results) and rules."""
        return {
            "attributes": dict(self.attributes),
            "postures": [_posture_json(p) for p in self.postures],
            "rules": [r.to_json() for r in self.rules],
        }


def _posture_json(result: PostureResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "passed": result.passed,
        "conditions": [
            {
                "condition": c.condition.text,
                "key": c.condition.key,
                "passed": c.passed,
                "set": c.is_set,
                "actual": c.actual,
                "reason": c.reason,
            }
            for c in result.conditions
        ],
        "errors": list(result.errors),
    }


def check_posture(posture: PostureDef, attributes: Mapping[str, AttributeValue]) -> PostureResult:
    """One posture against a device's attributes; unparsable conditions are listed in ``errors`` and fail it."""
    if posture.malformed:
        return PostureResult(posture.name, False, (), (f"{posture.name} is not a list of conditions",))
    results = tuple(evaluate(e.condition, attributes) for e in posture.conditions if e.condition is not None)
    errors = tuple(
        f"cannot parse {e.text!r} at line {e.error_line}, column {e.error_column}: {e.error}" for e in posture.errors
    )
    passed = not errors and all(r.passed for r in results)
    return PostureResult(posture.name, passed, results, errors)


def check_rule(rule: Rule, policy: Policy, passed: Mapping[str, bool]) -> RuleCheck:
    """Whether a device that passes the postures marked in ``passed`` meets ``rule``'s posture requirement."""
    via: Via
    if rule.src_posture is not None:
        refs, via = rule.src_posture, "srcPosture"
    elif policy.default_src_posture is not None:
        refs, via = policy.default_src_posture, "defaultSrcPosture"
    else:
        return RuleCheck(rule, True, "open")
    required = tuple(dict.fromkeys(r.name for r in refs))
    met_by = tuple(name for name in required if passed.get(name, False))
    undefined = tuple(name for name in required if name not in policy.postures)
    return RuleCheck(rule, bool(met_by), via, required, met_by, undefined)


def check_device(policy: Policy, attributes: Mapping[str, AttributeValue]) -> DeviceCheck:
    """Every posture and rule of ``policy`` against a device's attributes."""
    postures = tuple(check_posture(p, attributes) for p in policy.postures.values())
    passed = {p.name: p.passed for p in postures}
    rules = tuple(check_rule(rule, policy, passed) for rule in policy.rules)
    return DeviceCheck(postures, rules, dict(attributes))
