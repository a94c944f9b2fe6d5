"""What will this unlock: the rules of a policy that one attribute would open on one device.

Given the policy, a device's attributes (its ``node:`` attributes included, as the tailnet reports them) and a
profile's attribute and value, every grant and acl rule falls in one of these:

- **unlocked**: its posture requirement fails without the attribute and passes with it;
- **blocked**: it needs a posture that names the attribute, and still fails with it: the failing conditions
  (another condition the device does not meet, or the profile's value not the one the condition wants) are
  listed, so an approver sees why granting changes nothing there;
- **lost**: it passes without the attribute and fails with it (a ``NOT SET`` or ``!=`` condition on the key);
- anything else (open rules, rules met either way, rules whose postures never name the attribute) is left out.

"Without" is the device's attributes minus the key, whatever its current value: the answer then describes the
grant itself and stays the same while an earlier grant of the same attribute is live. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.posture.check import check_posture, check_rule
from app.posture.model import PostureResult
from app.posture.policy import Policy, Rule
from app.tailnet.models import AttributeValue


@dataclass(frozen=True, slots=True)
class RuleAccess:
    """One rule the attribute bears on, with who it lets in (``src``) and where (``dst``, ports, apps)."""

    rule: Rule
    postures: tuple[str, ...] = ()
    """The postures that make the difference (newly passed, still failing, or newly failed)."""
    missing: tuple[str, ...] = ()
    """For a blocked rule: ``posture:x: condition (why it fails)`` for every condition still failing."""

    @property
    def kind(self) -> str:
        """``grant`` or ``acl``."""
        return self.rule.kind

    @property
    def destinations(self) -> tuple[str, ...]:
        """The rule's ``dst`` (an acl's entries carry their ports: ``tag:db:5432``)."""
        return self.rule.dst

    @property
    def ports(self) -> tuple[str, ...]:
        """A grant's ``ip`` (``tcp:443``, ``*``); an acl's ports are in its destinations."""
        return self.rule.ip

    @property
    def apps(self) -> tuple[str, ...]:
        """A grant's application capabilities."""
        return self.rule.app

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "rule": self.rule.label,
            "line": self.rule.line,
            "src": list(self.rule.src),
            "dst": list(self.destinations),
            "ip": list(self.ports),
            "app": list(self.apps),
            "postures": list(self.postures),
            "missing": list(self.missing),
        }


@dataclass(frozen=True, slots=True)
class Unlock:
    """The rules that setting ``key = value`` on one device would open, leave shut, or close."""

    key: str
    value: AttributeValue
    used: bool
    """Whether any posture of the policy names ``key`` at all (if not, the grant changes no access)."""
    unlocked: tuple[RuleAccess, ...] = ()
    blocked: tuple[RuleAccess, ...] = ()
    lost: tuple[RuleAccess, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "key": self.key,
            "value": self.value,
            "used": self.used,
            "unlocked": [r.to_json() for r in self.unlocked],
            "blocked": [r.to_json() for r in self.blocked],
            "lost": [r.to_json() for r in self.lost],
        }


def postures_using(policy: Policy, key: str) -> frozenset[str]:
    """The postures with a (parsed) condition on ``key``."""
    return frozenset(
        name
        for name, posture in policy.postures.items()
        if any(entry.condition is not None and entry.condition.key == key for entry in posture.conditions)
    )


def what_unlocks(policy: Policy, attributes: Mapping[str, AttributeValue], key: str, value: AttributeValue) -> Unlock:
    """The rules of ``policy`` that ``key = value`` opens, leaves shut or closes on a device with ``attributes``."""
    using = postures_using(policy, key)
    if not using:
        return Unlock(key, value, used=False)
    without = {k: v for k, v in attributes.items() if k != key}
    with_key = {**without, key: value}
    before = {name: check_posture(p, without) for name, p in policy.postures.items()}
    after = {name: check_posture(p, with_key) for name, p in policy.postures.items()}
    passed_before = {name: r.passed for name, r in before.items()}
    passed_after = {name: r.passed for name, r in after.items()}
    unlocked: list[RuleAccess] = []
    blocked: list[RuleAccess] = []
    lost: list[RuleAccess] = []
    for rule in policy.rules:
        was, now = check_rule(rule, policy, passed_before), check_rule(rule, policy, passed_after)
        if now.met and not was.met:
            unlocked.append(RuleAccess(rule, tuple(n for n in now.passed if n not in was.passed)))
        elif was.met and not now.met:
            lost.append(RuleAccess(rule, tuple(n for n in was.passed if n in using)))
        elif not now.met:
            touching = tuple(name for name in now.required if name in using)
            if touching:
                missing = tuple(line for name in touching for line in _failing(after[name]))
                blocked.append(RuleAccess(rule, touching, missing))
    return Unlock(key, value, True, tuple(unlocked), tuple(blocked), tuple(lost))


def _failing(result: PostureResult) -> list[str]:
    """``posture:x: condition (why)`` for each condition of ``result`` that fails, and each that cannot parse."""
    lines = [f"{result.name}: {c.condition.text} ({c.reason})" for c in result.conditions if not c.passed]
    return lines + [f"{result.name}: {error}" for error in result.errors]
