"""HuJSON (JSON with ``//`` and ``/* */`` comments and trailing commas), parsed with source positions.

``parse(text)`` returns a ``Node`` tree: every value knows its line and column (1-based, counted in
characters), objects give their members by key (and where each key was written), and a string node maps an
index of its decoded text back to the file, so a column inside a condition string becomes a column of the
file. Malformed input raises ``HuJSONError`` with the line and column of the problem.

Beyond JSON only comments, trailing commas in objects and arrays and a leading byte-order mark are accepted.
Duplicate keys keep the last value, as JSON decoders do, and are listed in ``Node.duplicates``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_WHITESPACE = " \t\r\n"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_VALUE_START = '{["-0123456789tfn'
MAX_DEPTH = 200
"""Objects and arrays nested deeper than this are refused (a policy file never needs it)."""


class HuJSONError(ValueError):
    """Malformed HuJSON: ``message`` at ``line`` and ``column`` (1-based)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line}, column {column}: {message}")


@dataclass(frozen=True, slots=True)
class KeyPosition:
    """Where an object key was written (the position of its opening quote)."""

    key: str
    line: int
    column: int


@dataclass(eq=False, slots=True)
class Node:
    """One value of the document and where it starts.

    ``kind`` is ``object``, ``array``, ``string``, ``number``, ``boolean`` or ``null``; ``value`` is the plain
    Python value (dict, list, str, int, float, bool or None). Objects have ``members`` (key → child node) and
    ``keys`` (key → where the key was written); arrays have ``items``.
    """

    kind: str
    value: Any
    line: int
    column: int
    offset: int
    members: dict[str, Node] = field(default_factory=dict)
    keys: dict[str, KeyPosition] = field(default_factory=dict)
    items: list[Node] = field(default_factory=list)
    duplicates: list[KeyPosition] = field(default_factory=list)
    _char_columns: tuple[int, ...] = ()
    _end_column: int = 0

    def get(self, key: str) -> Node | None:
        """The member ``key`` of an object node (``None`` if absent or not an object)."""
        return self.members.get(key)

    def __getitem__(self, key: str | int) -> Node:
        if isinstance(key, int):
            return self.items[key]
        return self.members[key]

    def position_of(self, index: int) -> tuple[int, int]:
        """The file (line, column) of character ``index`` (0-based) of a string node's decoded text.

        An index at or past the end maps to the closing quote; other kinds give their own position.
        """
        if self.kind != "string":
            return self.line, self.column
        if 0 <= index < len(self._char_columns):
            return self.line, self._char_columns[index]
        if index < 0:
            return self.line, self.column
        return self.line, self._end_column

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first in document order."""
        yield self
        for child in self.members.values() if self.kind == "object" else self.items:
            yield from child.walk()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 1 if text.startswith("\ufeff") else 0
        self.line = 1
        self.line_start = self.pos
        self.depth = 0

    # -- positions and errors ------------------------------------------------------------------------

    def column_at(self, pos: int) -> int:
        return pos - self.line_start + 1

    def error(self, message: str, pos: int | None = None) -> HuJSONError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        start = self.text.rfind("\n", 0, at) + 1
        if line == 1 and self.text.startswith("\ufeff"):
            start = 1
        return HuJSONError(message, line, at - start + 1)

    def found(self) -> str:
        if self.pos >= len(self.text):
            return "end of file"
        char = self.text[self.pos]
        if char == "\n":
            return "end of line"
        return repr(char)

    def expected(self, what: str) -> HuJSONError:
        return self.error(f"expected {what}, found {self.found()}")

    # -- whitespace and comments ---------------------------------------------------------------------

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\n":
                self.pos += 1
                self.line += 1
                self.line_start = self.pos
            elif char in _WHITESPACE:
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated /* comment")
                newlines = text.count("\n", self.pos, end)
                if newlines:
                    self.line += newlines
                    self.line_start = text.rfind("\n", self.pos, end) + 1
                self.pos = end + 2
            else:
                return

    # -- values --------------------------------------------------------------------------------------

    def document(self) -> Node:
        self.skip()
        node = self.value()
        self.skip()
        if self.pos < len(self.text):
            raise self.expected("end of file")
        return node

    def value(self) -> Node:
        if self.pos >= len(self.text):
            raise self.expected("a value")
        char = self.text[self.pos]
        if char in "{[":
            if self.depth >= MAX_DEPTH:
                raise self.error(f"objects and arrays are nested more than {MAX_DEPTH} deep")
            self.depth += 1
            node = self.object() if char == "{" else self.array()
            self.depth -= 1
            return node
        if char == '"':
            return self.string()
        if char == "-" or char in _DIGITS:
            return self.number()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                node = self.node("boolean" if value is not None else "null", value)
                self.pos += len(word)
                return node
        raise self.expected("a value")

    def node(self, kind: str, value: Any) -> Node:
        return Node(kind, value, self.line, self.column_at(self.pos), self.pos)

    def object(self) -> Node:
        node = self.node("object", {})
        self.pos += 1
        self.skip()
        while True:
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                self.pos += 1
                return node
            if self.pos >= len(self.text) or self.text[self.pos] != '"':
                raise self.expected("a string key or '}'")
            key_node = self.string()
            key = key_node.value
            where = KeyPosition(key, key_node.line, key_node.column)
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                raise self.expected("':'")
            self.pos += 1
            self.skip()
            child = self.value()
            if key in node.members:
                node.duplicates.append(where)
                del node.members[key]
                del node.value[key]
            node.members[key] = child
            node.keys[key] = where
            node.value[key] = child.value
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                self.skip()
            elif self.pos < len(self.text) and self.text[self.pos] == "}":
                continue
            else:
                raise self.expected("',' or '}'")

    def array(self) -> Node:
        node = self.node("array", [])
        self.pos += 1
        self.skip()
        while True:
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.pos += 1
                return node
            if self.pos >= len(self.text) or self.text[self.pos] not in _VALUE_START:
                raise self.expected("a value or ']'")
            child = self.value()
            node.items.append(child)
            node.value.append(child.value)
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                self.skip()
            elif self.pos < len(self.text) and self.text[self.pos] == "]":
                continue
            else:
                raise self.expected("',' or ']'")

    def string(self) -> Node:
        node = self.node("string", "")
        text = self.text
        self.pos += 1
        chars: list[str] = []
        columns: list[int] = []
        while True:
            if self.pos >= len(text):
                raise self.error("unterminated string", node.offset)
            char = text[self.pos]
            column = self.column_at(self.pos)
            if char == '"':
                self.pos += 1
                break
            if char == "\n":
                raise self.error("unterminated string (a string cannot span lines)", node.offset)
            if ord(char) < 0x20:
                raise self.error(f"control character {char!r} in a string must be escaped")
            if char != "\\":
                chars.append(char)
                columns.append(column)
                self.pos += 1
                continue
            escape = text[self.pos + 1 : self.pos + 2]
            if escape in _ESCAPES:
                chars.append(_ESCAPES[escape])
                columns.append(column)
                self.pos += 2
            elif escape == "u":
                code = self.hex4(self.pos + 2)
                self.pos += 6
                if 0xD800 <= code < 0xDC00 and text.startswith("\\u", self.pos):
                    low = self.hex4(self.pos + 2)
                    if 0xDC00 <= low < 0xE000:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        self.pos += 6
                chars.append(chr(code))
                columns.append(column)
            else:
                raise self.error(f"invalid escape {text[self.pos : self.pos + 2]!r} in a string")
        node.value = "".join(chars)
        node._char_columns = tuple(columns)
        node._end_column = self.column_at(self.pos - 1)
        return node

    def hex4(self, start: int) -> int:
        digits = self.text[start : start + 4]
        if len(digits) != 4 or any(d not in _HEX for d in digits):
            raise self.error("invalid \\u escape: expected 4 hexadecimal digits", start - 2)
        return int(digits, 16)

    def number(self) -> Node:
        node = self.node("number", 0)
        text = self.text
        start = self.pos
        if text[self.pos] == "-":
            self.pos += 1
        if self.pos >= len(text) or text[self.pos] not in _DIGITS:
            raise self.expected("a digit")
        if text[self.pos] == "0":
            self.pos += 1
            if self.pos < len(text) and text[self.pos] in _DIGITS:
                raise self.error("numbers cannot have leading zeros")
        else:
            self.digits()
        is_float = False
        if self.pos < len(text) and text[self.pos] == ".":
            is_float = True
            self.pos += 1
            if self.pos >= len(text) or text[self.pos] not in _DIGITS:
                raise self.expected("a digit after '.'")
            self.digits()
        if self.pos < len(text) and text[self.pos] in "eE":
            is_float = True
            self.pos += 1
            if self.pos < len(text) and text[self.pos] in "+-":
                self.pos += 1
            if self.pos >= len(text) or text[self.pos] not in _DIGITS:
                raise self.expected("a digit in the exponent")
            self.digits()
        literal = text[start : self.pos]
        node.value = float(literal) if is_float else int(literal)
        return node

    def digits(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _DIGITS:
            self.pos += 1


def parse(text: str) -> Node:
    """Parse a HuJSON document into a ``Node`` tree; ``HuJSONError`` (with line and column) if malformed."""
    return _Parser(text).document()


def loads(text: str) -> Any:
    """The plain Python value of a HuJSON document."""
    return parse(text).value
