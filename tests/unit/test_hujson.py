"""The HuJSON parser: JSON plus comments and trailing commas, with line and column of every value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.posture.hujson import MAX_DEPTH, HuJSONError, loads, parse

POLICY = """\
// The tailnet policy file
{
  /* postures: device rules
     spanning lines */
  "postures": {
    "posture:trusted": [
      "huntress:firewallStatus == 'Enabled'",   // trailing comment
      "sentinelOne:activeThreats == 0",
    ],
  },
  "grants": [{"src": ["autogroup:member"], "dst": ["tag:prod"], "n": -12, "f": 1.5e2, "ok": true, "x": null},],
}
"""


def test_comments_and_trailing_commas_give_the_plain_value() -> None:
    assert loads(POLICY) == {
        "postures": {
            "posture:trusted": ["huntress:firewallStatus == 'Enabled'", "sentinelOne:activeThreats == 0"],
        },
        "grants": [{"src": ["autogroup:member"], "dst": ["tag:prod"], "n": -12, "f": 150.0, "ok": True, "x": None}],
    }


def test_every_value_and_key_knows_its_line_and_column() -> None:
    root = parse(POLICY)
    assert (root.kind, root.line, root.column) == ("object", 2, 1)
    postures = root["postures"]
    assert (postures.line, postures.column) == (5, 15)
    assert (root.keys["postures"].line, root.keys["postures"].column) == (5, 3)
    trusted = postures["posture:trusted"]
    assert [(item.line, item.column) for item in trusted.items] == [(7, 7), (8, 7)]
    grant = root["grants"][0]
    assert (grant.line, grant.column) == (11, 14)
    assert (grant["n"].kind, grant["n"].value, grant["n"].column) == ("number", -12, 70)
    assert isinstance(grant["n"].value, int) and isinstance(grant["f"].value, float)
    assert grant.get("missing") is None
    assert [n.kind for n in root.walk()][:4] == ["object", "object", "array", "string"]


def test_a_string_maps_its_characters_back_to_file_columns() -> None:
    node = parse('  "a\\u0041\\"b"')
    assert node.value == 'aA"b'
    # a at 4, \u0041 at 5 (6 characters), \" at 11, b at 13, closing quote at 14
    assert [node.position_of(i) for i in range(4)] == [(1, 4), (1, 5), (1, 11), (1, 13)]
    assert node.position_of(4) == (1, 14)
    assert node.position_of(99) == (1, 14)


def test_surrogate_pairs_and_unicode_count_as_one_column() -> None:
    node = parse('["\\ud83d\\ude00", "é", 1]')
    assert node.value == ["\U0001f600", "é", 1]
    assert node[2].column == 23


def test_a_leading_byte_order_mark_is_skipped() -> None:
    node = parse('\ufeff{"a": 1}')
    assert node.value == {"a": 1}
    assert (node.line, node.column) == (1, 1)
    assert (node["a"].line, node["a"].column) == (1, 7)


def test_duplicate_keys_keep_the_last_value_and_are_recorded() -> None:
    node = parse('{"a": 1,\n "a": 2}')
    assert node.value == {"a": 2}
    assert [(d.key, d.line, d.column) for d in node.duplicates] == [("a", 2, 2)]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('{\n  "a": 1\n  "b": 2\n}', 3, 3, "expected ',' or '}', found '\"'"),
        ('{"a" 1}', 1, 6, "expected ':', found '1'"),
        ("[1, 2", 1, 6, "expected ',' or ']', found end of file"),
        ("[1,,2]", 1, 4, "expected a value or ']', found ','"),
        ("{,}", 1, 2, "expected a string key or '}', found ','"),
        ("{'a': 1}", 1, 2, "expected a string key or '}', found \"'\""),
        ("", 1, 1, "expected a value, found end of file"),
        ("// only a comment\n", 2, 1, "expected a value, found end of file"),
        ('{"a": 1} x', 1, 10, "expected end of file, found 'x'"),
        ("\n\n  /* never closed", 3, 3, "unterminated /* comment"),
        ('{"a": "no end\n}', 1, 7, "unterminated string"),
        ('"tab\tinside"', 1, 5, "control character"),
        ('"bad \\x escape"', 1, 6, "invalid escape '\\\\x'"),
        ('"\\u12G4"', 1, 2, "invalid \\u escape"),
        ("[01]", 1, 3, "leading zeros"),
        ("[-]", 1, 3, "expected a digit, found ']'"),
        ("[1.]", 1, 4, "expected a digit after '.'"),
        ("[1e+]", 1, 5, "expected a digit in the exponent"),
        ("[tru]", 1, 2, "expected a value, found 't'"),
        ('{"a": /* c\n */ }', 2, 5, "expected a value, found '}'"),
    ],
)
def test_errors_name_line_and_column(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(HuJSONError) as caught:
        parse(text)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert message in error.message
    assert str(error).startswith(f"line {line}, column {column}: ")


def test_nesting_is_bounded() -> None:
    assert parse("[" * MAX_DEPTH + "]" * MAX_DEPTH).kind == "array"
    with pytest.raises(HuJSONError, match="nested more than"):
        parse("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_JSON, st.sampled_from([None, 0, 2]), st.booleans())
def test_any_json_document_reads_as_json_does(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert loads(text) == json.loads(text)
