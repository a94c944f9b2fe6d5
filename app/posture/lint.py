"""Lint a policy file's postures: what Tailscale would reject (errors) and what is probably a mistake (warnings).

Errors: malformed HuJSON, sections of the wrong shape, conditions that do not parse (with the column and
what was expected there; ordered comparisons on non-version strings are among them), postures referenced by
a rule or ``defaultSrcPosture`` but not defined. Warnings: postures defined but never used or without
conditions, unknown namespaces and unknown keys (with a suggestion), values outside a known attribute's
domain (with a hint: ``'Healthy'`` → ``'Protected'``), literals of the wrong type, ordered comparisons on
attributes that hold strings or booleans, duplicate keys, and a freshness marker (``huntress:stale``) tested
any other way than ``NOT SET`` (it is only ever ``true``, and absent while the agent checks in).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from app.posture.expr import format_literal
from app.posture.known import (
    VALUE_FORMATS,
    known_attribute,
    known_namespaces,
    similar_keys,
    similar_namespace,
    stale_marker,
    value_hint,
    vendor_custom_prefixes,
)
from app.posture.model import ORDERED, VERSION_KEYS, Condition, Literal, Op
from app.posture.policy import ConditionEntry, Level, Policy
from app.tailnet.models import CUSTOM_NAMESPACE
from app.vendors.base import KnownAttribute

_NEGATED = frozenset({Op.NE, Op.NOT_IN})


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint finding at a line and column (1-based) of the policy file."""

    level: Level
    line: int
    column: int
    message: str

    def format(self, source: str) -> str:
        """``file:line:column: level: message``."""
        return f"{source}:{self.line}:{self.column}: {self.level}: {self.message}"

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"level": self.level, "line": self.line, "column": self.column, "message": self.message}


def lint(policy: Policy) -> list[Finding]:
    """Every finding of ``policy``, ordered by position."""
    findings = [Finding(p.level, p.line, p.column, p.message) for p in policy.problems]
    if policy.syntax_error is not None:
        return findings
    for posture in policy.postures.values():
        if not posture.malformed and not posture.conditions:
            findings.append(
                Finding(
                    "warning", posture.line, posture.column, f"{posture.name} has no conditions: every device meets it"
                )
            )
        for entry in posture.conditions:
            findings.extend(_condition_findings(posture.name, entry))
    findings.extend(_reference_findings(policy))
    return sorted(findings, key=lambda f: (f.line, f.column, f.level, f.message))


def has_errors(findings: list[Finding]) -> bool:
    """Whether any finding is an error."""
    return any(f.level == "error" for f in findings)


def _reference_findings(policy: Policy) -> list[Finding]:
    out: list[Finding] = []
    defined = list(policy.postures)
    used: set[str] = set()
    for ref in policy.references():
        used.add(ref.name)
        if ref.name in policy.postures:
            continue
        close = difflib.get_close_matches(ref.name, defined, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        out.append(Finding("error", ref.line, ref.column, f"{ref.name} is not defined in postures{hint}"))
    for posture in policy.postures.values():
        if posture.name not in used:
            message = f"{posture.name} is defined but no grant, acl or defaultSrcPosture uses it"
            out.append(Finding("warning", posture.line, posture.column, message))
    return out


def _condition_findings(posture: str, entry: ConditionEntry) -> list[Finding]:
    condition = entry.condition
    if condition is None:
        return [Finding("error", entry.error_line, entry.error_column, f"{posture}: {entry.error}")]
    key_line, key_column = entry.position(condition.key_column)
    attribute, message = _key_check(condition.key)
    if attribute is None:
        return [Finding("warning", key_line, key_column, message)] if message else []
    line, column = entry.position(condition.operand_column) if condition.operand_column else (key_line, key_column)
    stale = _stale_message(condition)
    if stale:
        return [Finding("warning", key_line, key_column, stale)]
    return [Finding("warning", line, column, m) for m in _value_messages(condition, attribute)]


def _stale_message(condition: Condition) -> str:
    """A warning for a freshness marker tested any way but ``NOT SET``: the marker is ``true`` exactly on devices
    whose agent has not checked in within the integration's max agent age, and absent otherwise (never false)."""
    label = stale_marker(condition.key)
    if label is None or condition.op is Op.NOT_SET:
        return ""
    key = condition.key
    fix = f"to require a {label} agent that checked in recently, write '{key} NOT SET'"
    literals = _literals(condition)
    if not all(isinstance(v, bool) for v in literals):
        return ""  # a literal of the wrong type: the type check says so
    admits_stale = (
        condition.op is Op.IS_SET
        or (condition.op in (Op.EQ, Op.IN) and True in literals)
        or (condition.op in (Op.NE, Op.NOT_IN) and True not in literals)
    )
    if admits_stale:
        return (
            f"{key} is set (to true) only on devices whose {label} agent has not checked in recently: this "
            f"condition admits exactly those devices; {fix}"
        )
    return f"{key} is never false (accessbot removes it when the agent checks in): the condition never matches; {fix}"


def _suggest(candidates: list[str]) -> str:
    return f"; did you mean {candidates[0]!r}?" if candidates else ""


def _key_check(key: str) -> tuple[KnownAttribute | None, str]:
    """The known attribute of ``key``, or a warning about it (empty when an unknown key is fine)."""
    attribute = known_attribute(key)
    if attribute is not None:
        return attribute, ""
    namespace, _, name = key.partition(":")
    if namespace not in known_namespaces():
        candidates = similar_keys(key)
        if not candidates:
            meant = similar_namespace(namespace)
            candidates = [f"{meant}:{name}"] if meant else []
        return None, f"unknown namespace {namespace!r} in {key}{_suggest(candidates)}"
    if namespace == CUSTOM_NAMESPACE:
        folded = key.casefold()
        if not any(folded.startswith(prefix.casefold()) for prefix in vendor_custom_prefixes()):
            return None, ""  # the tailnet's own custom attributes are not known here
        return None, f"unknown attribute {key} (no integration writes it){_suggest(similar_keys(key))}"
    return None, f"unknown attribute {key}{_suggest(similar_keys(key))}"


def _literals(condition: Condition) -> tuple[Literal, ...]:
    operand = condition.operand
    if isinstance(operand, tuple):
        return operand
    return () if operand is None else (operand,)


def _type_of(value: Literal) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int) else "string"


def _retyped(value: Literal, wanted: str) -> str | None:
    """``value`` written as the type ``wanted``, when there is an obvious spelling."""
    text = value if isinstance(value, str) else format_literal(value)
    if wanted == "string":
        return format_literal(text)
    if wanted == "number" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return str(int(value))
    if wanted == "boolean":
        folded = text.strip().lower()
        if folded in ("true", "1", "yes", "on"):
            return "true"
        if folded in ("false", "0", "no", "off"):
            return "false"
    return None


def _value_messages(condition: Condition, attribute: KnownAttribute) -> list[str]:
    key, op = condition.key, condition.op
    if op in ORDERED and attribute.type != "number" and key not in VERSION_KEYS:
        holds = "versions" if attribute.version else f"{attribute.type}s"
        return [
            f"ordered comparison {op} on {key}, which holds {holds}: Tailscale orders only numbers and "
            f"node:osVersion/node:tsVersion, so use == or IN"
        ]
    never = "always holds" if op in _NEGATED else "never matches"
    messages: list[str] = []
    for value in _literals(condition):
        kind = _type_of(value)
        if kind != attribute.type:
            meant = _retyped(value, attribute.type)
            hint = f"; did you mean {meant}?" if meant else ""
            messages.append(
                f"{key} is a {attribute.type}, but {format_literal(value)} is a {kind}: the condition {never}{hint}"
            )
            continue
        if not isinstance(value, str):
            continue
        if attribute.values and value not in attribute.values:
            allowed = ", ".join(format_literal(v) for v in attribute.values)
            meant = value_hint(key, value)
            hint = f"; did you mean {format_literal(meant)}?" if meant else ""
            messages.append(
                f"{format_literal(value)} is not a value of {key} (one of {allowed}): the condition {never}{hint}"
            )
        elif key in VALUE_FORMATS and not VALUE_FORMATS[key][0].fullmatch(value):
            shape = VALUE_FORMATS[key][1]
            upper = value.upper()
            hint = f"; did you mean {format_literal(upper)}?" if VALUE_FORMATS[key][0].fullmatch(upper) else ""
            messages.append(f"{format_literal(value)} is not {shape}: the condition {never}{hint}")
    return messages
