"""Posture conditions (Tailscale's device posture syntax, tailscale.com/kb/1288/device-posture): a hand-written
tokenizer and parser, an explaining evaluator, formatting.

Grammar (keywords and ``true``/``false`` in any case, whitespace anywhere between tokens)::

    condition := KEY ( CMP literal | IN list | NOT IN list | IS SET | NOT SET ) END
    CMP       := == | != | < | <= | > | >=
    list      := '[' literal ( ',' literal )* ','? ']'
    literal   := 'single-quoted string' | integer (optionally negative) | true | false
    KEY       := namespace:name  (letters, digits, _ and :)

Strings have **no escapes**: a string runs from one single quote to the next, and a backslash is an ordinary
character. Tailscale documents no escape syntax and attribute values cannot contain quotes, so accepting
``\\'`` would only admit conditions the real control plane may reject.

Ordered comparisons (``<``, ``<=``, ``>``, ``>=``) take a number, or a quoted version for ``node:osVersion`` and
``node:tsVersion``. Every malformed condition raises ``ConditionSyntaxError`` with a 1-based column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NoReturn, TypeGuard

from app.posture.model import (
    ORDERED,
    VERSION_KEYS,
    Condition,
    ConditionResult,
    ConditionSyntaxError,
    Literal,
    Op,
)
from app.tailnet.models import AttributeValue
from app.tailnet.versions import compare_versions

EXPECTED_KEY = "an attribute key (namespace:name, e.g. custom:managed)"
EXPECTED_OPERATOR = "an operator (==, !=, <, <=, >, >=, IN, NOT IN, IS SET, NOT SET)"
EXPECTED_VALUE = "a value: 'string', a number, true or false"
EXPECTED_LIST = "'[' to start a list of values"
EXPECTED_LIST_NEXT = "']' or ','"
EXPECTED_END = "end of condition"
EXPECTED_ORDERED = (
    "a number: ordered comparisons (<, <=, >, >=) are only for numbers and for the versions "
    "node:osVersion/node:tsVersion"
)
EXPECTED_ORDERED_VERSION = "a number or a quoted version such as '1.40'"

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_KEY = re.compile(r"[A-Za-z0-9_]+:[A-Za-z0-9_:]*[A-Za-z0-9_]")
_DOTTED_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)+")
_NUMBER = re.compile(r"-?[0-9]+(?![A-Za-z0-9_:])")
_WORD = re.compile(r"[A-Za-z0-9_:]+")
_OPERATOR_CHARS = "=!<>"


@dataclass(frozen=True, slots=True)
class _Token:
    """One token: ``kind`` is key, word, number, string, op, punct, bad or end; ``text`` is the source text."""

    kind: str
    text: str
    column: int
    value: Literal | None = None
    hint: str = ""


def _describe(token: _Token) -> str:
    """What was found, for error messages: ``'==='``, ``the string 'x'``, ``end of condition``."""
    if token.kind == "end":
        return "end of condition"
    if token.kind == "string":
        return f"the string {token.text}"
    if token.kind == "number":
        return f"the number {token.text}"
    described = f"'{token.text}'"
    return f"{described} ({token.hint})" if token.hint else described


def _tokenize(text: str) -> Iterator[_Token]:
    """Yield tokens lazily, so that errors are reported in reading order; ends with an ``end`` token."""
    pos, length = 0, len(text)
    while True:
        while pos < length and text[pos].isspace():
            pos += 1
        column = pos + 1
        if pos >= length:
            yield _Token("end", "", column)
            return
        char = text[pos]
        if char == "'":
            close = text.find("'", pos + 1)
            if close < 0:
                raise ConditionSyntaxError(
                    text, column, "a closing quote (') for the string starting here", "end of condition"
                )
            source = text[pos : close + 1]
            yield _Token("string", source, column, source[1:-1])
            pos = close + 1
        elif char in "[],":
            yield _Token("punct", char, column)
            pos += 1
        elif char in _OPERATOR_CHARS:
            end = pos
            while end < length and text[end] in _OPERATOR_CHARS:
                end += 1
            source = text[pos:end]
            yield _Token("op" if source in _COMPARISONS else "bad", source, column)
            pos = end
        elif match := _DOTTED_NUMBER.match(text, pos):
            source = match.group()
            yield _Token("bad", source, column, hint=f"numbers are integers; quote versions: '{source}'")
            pos = match.end()
        elif match := _NUMBER.match(text, pos):
            yield _Token("number", match.group(), column, int(match.group()))
            pos = match.end()
        elif match := _WORD.match(text, pos):
            source = match.group()
            yield _Token("key" if ":" in source else "word", source, column)
            pos = match.end()
        else:
            hint = "strings use single quotes" if char == '"' else ""
            yield _Token("bad", char, column, hint=hint)
            pos += 1


class _Parser:
    """Recursive descent over the lazy token stream."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._tokens = _tokenize(text)
        self._previous: _Token | None = None
        self._current: _Token | None = None

    def next(self) -> _Token:
        """Consume the next token."""
        self._previous, self._current = self._current, next(self._tokens)
        return self._current

    def fail(self, token: _Token, expected: str) -> NoReturn:
        """Raise a syntax error at ``token``, hinting at escapes if a string ended in a backslash."""
        previous = self._previous
        if previous is not None and previous.kind == "string" and previous.text.endswith("\\'"):
            expected += " (strings have no escapes: a quote after a backslash ends the string)"
        raise ConditionSyntaxError(self.text, token.column, expected, _describe(token))

    @staticmethod
    def is_word(token: _Token, word: str) -> bool:
        """Whether ``token`` is the keyword ``word`` (any case)."""
        return token.kind == "word" and token.text.upper() == word

    def literal(self, token: _Token) -> Literal:
        """The literal value of ``token``: a string, an integer, true or false."""
        if token.kind in ("string", "number") and token.value is not None:
            return token.value
        if self.is_word(token, "TRUE"):
            return True
        if self.is_word(token, "FALSE"):
            return False
        self.fail(token, EXPECTED_VALUE)

    def values(self) -> tuple[tuple[Literal, ...], int]:
        """A non-empty bracketed list (trailing comma allowed) and the column of its ``[``."""
        opening = self.next()
        if opening.text != "[" or opening.kind != "punct":
            self.fail(opening, EXPECTED_LIST)
        items: list[Literal] = [self.literal(self.next())]
        while True:
            token = self.next()
            if token.kind == "punct" and token.text == "]":
                return tuple(items), opening.column
            if token.kind != "punct" or token.text != ",":
                self.fail(token, EXPECTED_LIST_NEXT)
            token = self.next()
            if token.kind == "punct" and token.text == "]":
                return tuple(items), opening.column
            items.append(self.literal(token))

    def condition(self) -> Condition:
        """The whole condition: key, operator, operand, end."""
        key_token = self.next()
        if key_token.kind != "key" or not _KEY.fullmatch(key_token.text):
            self.fail(key_token, EXPECTED_KEY)
        key = key_token.text
        op_token = self.next()
        operand: Literal | tuple[Literal, ...] | None = None
        operand_column: int | None = None
        if op_token.kind == "op":
            op = Op(op_token.text)
            value_token = self.next()
            operand, operand_column = self.literal(value_token), value_token.column
            if op in ORDERED:
                self.check_ordered(key, operand, value_token)
        elif self.is_word(op_token, "IN"):
            op = Op.IN
            operand, operand_column = self.values()
        elif self.is_word(op_token, "NOT"):
            token = self.next()
            if self.is_word(token, "IN"):
                op = Op.NOT_IN
                operand, operand_column = self.values()
            elif self.is_word(token, "SET"):
                op = Op.NOT_SET
            else:
                self.fail(token, "IN or SET")
        elif self.is_word(op_token, "IS"):
            token = self.next()
            if not self.is_word(token, "SET"):
                self.fail(token, "SET")
            op = Op.IS_SET
        else:
            self.fail(op_token, EXPECTED_OPERATOR)
        end = self.next()
        if end.kind != "end":
            self.fail(end, EXPECTED_END)
        return Condition(self.text, key, op, operand, key_token.column, operand_column)

    def check_ordered(self, key: str, operand: Literal, token: _Token) -> None:
        """Ordered comparisons take a number, or a version string for the version keys; never a boolean."""
        if key in VERSION_KEYS:
            if isinstance(operand, bool):
                self.fail(token, EXPECTED_ORDERED_VERSION)
        elif not _is_number(operand):
            self.fail(token, EXPECTED_ORDERED)


def parse_condition(text: str) -> Condition:
    """Parse one posture condition; raise ``ConditionSyntaxError`` (1-based column) if it is malformed."""
    return _Parser(text).condition()


def _is_number(value: object) -> TypeGuard[int | float]:
    """An integer (or float) that is not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: object) -> str:
    """The attribute type name of a value: boolean, number or string."""
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    return "string"


def _typed_equal(a: object, b: object) -> bool:
    """Equal in value and type: ``true`` never equals ``1``, ``'1'`` never equals ``1``."""
    return _kind(a) == _kind(b) and a == b


def format_literal(value: Literal | float) -> str:
    """Canonical text of a literal: ``'x'``, ``3``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _format_list(values: tuple[Literal, ...]) -> str:
    return "[" + ", ".join(format_literal(value) for value in values) + "]"


def _as_tuple(operand: Literal | tuple[Literal, ...] | None) -> tuple[Literal, ...]:
    if isinstance(operand, tuple):
        return operand
    return () if operand is None else (operand,)


def format_condition(condition: Condition) -> str:
    """Canonical text of a condition, e.g. ``node:os IN ['macos', 'windows']``, ``custom:x IS SET``."""
    op = condition.op
    if op in (Op.IS_SET, Op.NOT_SET):
        return f"{condition.key} {op}"
    if op in (Op.IN, Op.NOT_IN):
        return f"{condition.key} {op} {_format_list(_as_tuple(condition.operand))}"
    operand = condition.operand
    if operand is None or isinstance(operand, tuple):
        raise ValueError(f"{op} needs a single value, got {operand!r}")
    return f"{condition.key} {op} {format_literal(operand)}"


def _holds(op: Op, comparison: int) -> bool:
    """Whether an ordered ``op`` holds for a -1/0/1 comparison result."""
    if op is Op.LT:
        return comparison < 0
    if op is Op.LE:
        return comparison <= 0
    if op is Op.GT:
        return comparison > 0
    return comparison >= 0


def _typed(value: Literal | float) -> str:
    """A value with its type, e.g. ``true (a boolean)``."""
    return f"{format_literal(value)} (a {_kind(value)})"


def _evaluate_set(condition: Condition, actual: AttributeValue) -> tuple[bool, str]:
    key, op, shown = condition.key, condition.op, format_literal(actual)
    if op is Op.IS_SET:
        return True, f"{key} is set to {shown}"
    if op is Op.NOT_SET:
        return False, f"{key} is set to {shown}"
    if op in (Op.EQ, Op.NE):
        expected = condition.operand
        if expected is None or isinstance(expected, tuple):
            return False, f"{op} needs a single value to compare {key} with"
        if _typed_equal(actual, expected):
            return op is Op.EQ, f"{key} is {shown}" + ("" if op is Op.EQ else ", and must not be")
        if _kind(actual) != _kind(expected):
            return op is Op.NE, f"{key} is {_typed(actual)}, not {_typed(expected)}"
        return op is Op.NE, f"{key} is {shown}, not {format_literal(expected)}"
    if op in (Op.IN, Op.NOT_IN):
        values = _as_tuple(condition.operand)
        listed = _format_list(values)
        if any(_typed_equal(actual, value) for value in values):
            if op is Op.IN:
                return True, f"{key} is {shown}, one of {listed}"
            return False, f"{key} is {shown}, one of the excluded {listed}"
        return op is Op.NOT_IN, f"{key} is {shown}, not one of {listed}"
    return _evaluate_ordered(condition, actual)


def _evaluate_ordered(condition: Condition, actual: AttributeValue) -> tuple[bool, str]:
    key, op = condition.key, condition.op
    literal = condition.operand
    if literal is None or isinstance(literal, tuple):
        return False, f"{op} needs a single value to compare {key} with"
    if key in VERSION_KEYS:
        if isinstance(literal, bool) or isinstance(actual, bool):
            bad = actual if isinstance(actual, bool) else literal
            return False, f"{key} {op} cannot compare the boolean {format_literal(bad)} as a version"
        left, right = str(actual), str(literal)
        comparison = compare_versions(left, right)
        if _holds(op, comparison):
            return True, f"{key} {left} {op} {right}"
        if comparison == 0:
            return False, f"{key} {left} = {right}, not {op} {right}"
        return False, f"{key} {left} {'<' if comparison < 0 else '>'} {right}"
    if not _is_number(literal):
        return False, (
            f"{key} {op} {format_literal(literal)} is not allowed: ordered comparisons are only for numbers "
            "and node:osVersion/node:tsVersion"
        )
    if not _is_number(actual):
        return False, f"{key} is {_typed(actual)}, not a number, so it cannot be {op} {format_literal(literal)}"
    comparison = (actual > literal) - (actual < literal)
    if _holds(op, comparison):
        return True, f"{key} is {actual}, {op} {literal}"
    return False, f"{key} is {actual}, not {op} {literal}"


def evaluate(condition: Condition, attributes: Mapping[str, AttributeValue]) -> ConditionResult:
    """Evaluate a condition against a device's attributes, explaining the outcome in ``reason``.

    An unset attribute fails everything but ``NOT SET``; equality and membership compare value and type;
    ordered comparisons need numbers, except on the version keys, which order as versions.
    """
    actual = attributes.get(condition.key)
    if actual is None:
        return ConditionResult(condition, condition.op is Op.NOT_SET, None, False, f"{condition.key} is not set")
    passed, reason = _evaluate_set(condition, actual)
    return ConditionResult(condition, passed, actual, True, reason)
