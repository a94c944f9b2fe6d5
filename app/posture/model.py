"""The shared vocabulary of posture evaluation: parsed conditions and explained results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.tailnet.models import AttributeValue

Literal = str | int | bool
"""A literal in a condition: a single-quoted string, an integer, ``true`` or ``false``."""


class Op(StrEnum):
    """Condition operators (as written canonically)."""

    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_SET = "IS SET"
    NOT_SET = "NOT SET"


ORDERED = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})
VERSION_KEYS = frozenset({"node:osVersion", "node:tsVersion"})
"""Attributes that order as versions (ordered comparisons on other strings are not allowed)."""


class ConditionSyntaxError(ValueError):
    """A malformed condition: ``column`` (1-based) and what was ``expected`` there."""

    def __init__(self, text: str, column: int, expected: str, found: str) -> None:
        self.text = text
        self.column = column
        self.expected = expected
        self.found = found
        super().__init__(f"column {column}: expected {expected}, found {found}")


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition, e.g. ``huntress:firewallStatus == 'Enabled'``.

    ``operand`` is ``None`` for ``IS SET``/``NOT SET``, a tuple for ``IN``/``NOT IN``, else one literal.
    """

    text: str
    key: str
    op: Op
    operand: Literal | tuple[Literal, ...] | None = None
    key_column: int = 1
    operand_column: int | None = None


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """A condition evaluated against a device: the actual value and why it passed or failed."""

    condition: Condition
    passed: bool
    actual: AttributeValue | None
    is_set: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PostureResult:
    """A posture (all conditions must hold) evaluated against a device."""

    name: str
    passed: bool
    conditions: tuple[ConditionResult, ...] = ()
    errors: tuple[str, ...] = field(default=())
    """Conditions that could not be parsed (a posture with errors never passes)."""
