from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.posture.expr import (
    EXPECTED_END,
    EXPECTED_KEY,
    EXPECTED_LIST_NEXT,
    EXPECTED_OPERATOR,
    EXPECTED_VALUE,
    evaluate,
    format_condition,
    format_literal,
    parse_condition,
)
from app.posture.model import Condition, ConditionSyntaxError, Literal, Op
from app.tailnet.models import AttributeValue

# --- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "op", "operand"),
    [
        ("huntress:firewallStatus == 'Enabled'", "huntress:firewallStatus", Op.EQ, "Enabled"),
        ("huntress:defenderStatus == 'Healthy'", "huntress:defenderStatus", Op.EQ, "Healthy"),  # seed 000
        ("huntress:firewallStatus != 'Pending Isolation'", "huntress:firewallStatus", Op.NE, "Pending Isolation"),
        ("sentinelOne:activeThreats == 0", "sentinelOne:activeThreats", Op.EQ, 0),
        ("sentinelOne:activeThreats < 1", "sentinelOne:activeThreats", Op.LT, 1),
        ("sentinelOne:activeThreats <= 1", "sentinelOne:activeThreats", Op.LE, 1),
        ("sentinelOne:activeThreats > -1", "sentinelOne:activeThreats", Op.GT, -1),
        ("sentinelOne:activeThreats >= -20", "sentinelOne:activeThreats", Op.GE, -20),
        ("custom:n == -0", "custom:n", Op.EQ, 0),
        ("sentinelOne:infected == false", "sentinelOne:infected", Op.EQ, False),
        ("node:tsAutoUpdate == true", "node:tsAutoUpdate", Op.EQ, True),
        ("node:tsAutoUpdate == TRUE", "node:tsAutoUpdate", Op.EQ, True),
        ("node:tsAutoUpdate != False", "node:tsAutoUpdate", Op.NE, False),
        ("custom:s == ''", "custom:s", Op.EQ, ""),
        ("custom:s == 'true'", "custom:s", Op.EQ, "true"),
        ("custom:s == '1'", "custom:s", Op.EQ, "1"),
        ("node:tsVersion >= '1.40'", "node:tsVersion", Op.GE, "1.40"),
        ("node:osVersion < '10.0.26200.7781'", "node:osVersion", Op.LT, "10.0.26200.7781"),
        ("node:osVersion > 10", "node:osVersion", Op.GT, 10),
        ("node:os IN ['macos', 'windows']", "node:os", Op.IN, ("macos", "windows")),
        ("node:os in ['macos']", "node:os", Op.IN, ("macos",)),
        ("node:os In ['macos',]", "node:os", Op.IN, ("macos",)),
        ("node:os NOT IN ['linux', 'freebsd', ]", "node:os", Op.NOT_IN, ("linux", "freebsd")),
        ("node:os not in ['linux']", "node:os", Op.NOT_IN, ("linux",)),
        ("custom:mixed IN [1, -2, true, 'x']", "custom:mixed", Op.IN, (1, -2, True, "x")),
        ("custom:x IS SET", "custom:x", Op.IS_SET, None),
        ("custom:x is set", "custom:x", Op.IS_SET, None),
        ("custom:x Is Set", "custom:x", Op.IS_SET, None),
        ("custom:x NOT SET", "custom:x", Op.NOT_SET, None),
        ("custom:x not set", "custom:x", Op.NOT_SET, None),
        ("custom:a_b:c9 == 1", "custom:a_b:c9", Op.EQ, 1),
        # whitespace-insensitive
        ("custom:x=='a'", "custom:x", Op.EQ, "a"),
        ("custom:x<=-1", "custom:x", Op.LE, -1),
        ("  custom:x   ==   'a'  ", "custom:x", Op.EQ, "a"),
        ("\tcustom:x\n!=\t3\n", "custom:x", Op.NE, 3),
        ("node:os IN['a','b']", "node:os", Op.IN, ("a", "b")),
        ("node:os IN [ 'a' , 'b' , ]", "node:os", Op.IN, ("a", "b")),
        ("node:os NOT   IN\t['a']", "node:os", Op.NOT_IN, ("a",)),
        ("custom:x   IS    SET", "custom:x", Op.IS_SET, None),
        # no escapes: a backslash is an ordinary character
        ("custom:x == 'a\\'", "custom:x", Op.EQ, "a\\"),
    ],
)
def test_parse_condition(text: str, key: str, op: Op, operand: Literal | tuple[Literal, ...] | None) -> None:
    condition = parse_condition(text)
    assert condition.key == key
    assert condition.op is op
    assert condition.operand == operand
    assert type(condition.operand) is type(operand)
    if isinstance(operand, tuple):
        assert isinstance(condition.operand, tuple)
        assert [type(v) for v in condition.operand] == [type(v) for v in operand]
    assert condition.text == text


@pytest.mark.parametrize(
    ("text", "key_column", "operand_column"),
    [
        ("huntress:firewallStatus == 'Enabled'", 1, 28),
        ("   custom:x == 3", 4, 16),
        ("custom:x<-1", 1, 10),
        ("node:os IN ['a']", 1, 12),
        ("node:os NOT IN  ['a']", 1, 17),
        ("custom:x IS SET", 1, None),
        (" custom:x NOT SET", 2, None),
    ],
)
def test_columns(text: str, key_column: int, operand_column: int | None) -> None:
    condition = parse_condition(text)
    assert condition.key_column == key_column
    assert condition.operand_column == operand_column


@pytest.mark.parametrize(
    ("text", "column", "expected", "found"),
    [
        ("huntress:firewallStatus = 'Enabled'", 25, EXPECTED_OPERATOR, "'='"),
        ("huntress:firewallStatus === 'Enabled'", 25, EXPECTED_OPERATOR, "'==='"),
        ("custom:x => 1", 10, EXPECTED_OPERATOR, "'=>'"),
        ("custom:x 'a'", 10, EXPECTED_OPERATOR, "the string 'a'"),
        ("custom:x", 9, EXPECTED_OPERATOR, "end of condition"),
        ("custom:x EQUALS 1", 10, EXPECTED_OPERATOR, "'EQUALS'"),
        ("custom:key == ", 15, EXPECTED_VALUE, "end of condition"),
        ("custom:key ==", 14, EXPECTED_VALUE, "end of condition"),
        ("custom:key == Enabled", 15, EXPECTED_VALUE, "'Enabled'"),
        ("custom:key == yes", 15, EXPECTED_VALUE, "'yes'"),
        ("custom:key == [1]", 15, EXPECTED_VALUE, "'['"),
        ('custom:key == "Enabled"', 15, EXPECTED_VALUE, "'\"' (strings use single quotes)"),
        ("custom:key == +1", 15, EXPECTED_VALUE, "'+'"),
        ("custom:key == 1.5", 15, EXPECTED_VALUE, "'1.5' (numbers are integers; quote versions: '1.5')"),
        ("node:tsVersion >= 1.40", 19, EXPECTED_VALUE, "'1.40' (numbers are integers; quote versions: '1.40')"),
        ("custom:key IN [1, 2", 20, EXPECTED_LIST_NEXT, "end of condition"),
        ("custom:key IN [1 2]", 18, EXPECTED_LIST_NEXT, "the number 2"),
        ("custom:key IN [1; 2]", 17, EXPECTED_LIST_NEXT, "';'"),
        ("custom:key IN []", 16, EXPECTED_VALUE, "']'"),
        ("custom:key IN [,]", 16, EXPECTED_VALUE, "','"),
        ("custom:key IN [1,,2]", 18, EXPECTED_VALUE, "','"),
        ("custom:key IN [1,", 18, EXPECTED_VALUE, "end of condition"),
        ("custom:key IN 'a'", 15, "'[' to start a list of values", "the string 'a'"),
        ("custom:key NOT IN", 18, "'[' to start a list of values", "end of condition"),
        ("custom:key IN (1, 2)", 15, "'[' to start a list of values", "'('"),
        ("custom:key == 'unterminated", 15, "a closing quote (') for the string starting here", "end of condition"),
        ("custom:key IN ['a', 'b]", 21, "a closing quote (') for the string starting here", "end of condition"),
        ("custom:key IS", 14, "SET", "end of condition"),
        ("custom:key IS NOT SET", 15, "SET", "'NOT'"),
        ("custom:key NOT", 15, "IN or SET", "end of condition"),
        ("custom:key NOT == 1", 16, "IN or SET", "'=='"),
        ("'quoted' == 1", 1, EXPECTED_KEY, "the string 'quoted'"),
        ("", 1, EXPECTED_KEY, "end of condition"),
        ("   ", 4, EXPECTED_KEY, "end of condition"),
        ("firewallStatus == 'Enabled'", 1, EXPECTED_KEY, "'firewallStatus'"),
        (":x == 1", 1, EXPECTED_KEY, "':x'"),
        ("custom: == 1", 1, EXPECTED_KEY, "'custom:'"),
        ("123 == 1", 1, EXPECTED_KEY, "the number 123"),
        ("== 1", 1, EXPECTED_KEY, "'=='"),
        ("custom:x-y == 1", 9, EXPECTED_OPERATOR, "'-'"),
        ("custom:key == 'a' extra", 19, EXPECTED_END, "'extra'"),
        ("custom:key == 'a' 'b'", 19, EXPECTED_END, "the string 'b'"),
        ("custom:key IS SET SET", 19, EXPECTED_END, "'SET'"),
        ("custom:key IN [1] ,", 19, EXPECTED_END, "','"),
        ("custom:key == 1 AND custom:y == 2", 17, EXPECTED_END, "'AND'"),
    ],
)
def test_syntax_errors(text: str, column: int, expected: str, found: str) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    error = info.value
    assert (error.column, error.expected, error.found) == (column, expected, found)
    assert error.text == text
    assert str(error) == f"column {column}: expected {expected}, found {found}"


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("custom:x < 'abc'", 12),
        ("custom:x >= 'abc'", 13),
        ("huntress:firewallStatus > 'Enabled'", 27),
        ("sentinelOne:agentVersion >= '22.3.2.23'", 29),
        ("custom:x <= true", 13),
        ("node:os < 'macos'", 11),
    ],
)
def test_ordered_comparison_needs_a_number_or_version_key(text: str, column: int) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    assert info.value.column == column
    assert "ordered comparisons" in info.value.expected
    assert "node:osVersion/node:tsVersion" in info.value.expected


@pytest.mark.parametrize("text", ["node:tsVersion < true", "node:osVersion >= false"])
def test_ordered_comparison_on_a_version_key_rejects_booleans(text: str) -> None:
    with pytest.raises(ConditionSyntaxError, match="a number or a quoted version"):
        parse_condition(text)


def test_an_escaped_quote_is_not_an_escape() -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition("custom:x == 'it\\'s'")
    assert info.value.column == 18
    assert info.value.found == "'s'"
    assert "strings have no escapes" in info.value.expected


def test_an_error_before_an_unterminated_string_is_reported_first() -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition("custom:x = 'abc")
    assert (info.value.column, info.value.expected) == (10, EXPECTED_OPERATOR)


# --- formatting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "'x'"),
        ("Pending Isolation", "'Pending Isolation'"),
        ("", "''"),
        (3, "3"),
        (-7, "-7"),
        (0, "0"),
        (True, "true"),
        (False, "false"),
        ("1", "'1'"),
    ],
)
def test_format_literal(value: Literal, expected: str) -> None:
    assert format_literal(value) == expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("huntress:firewallStatus=='Enabled'", "huntress:firewallStatus == 'Enabled'"),
        ("  custom:x   !=  -3 ", "custom:x != -3"),
        ("custom:x == TRUE", "custom:x == true"),
        ("node:tsVersion>='1.40'", "node:tsVersion >= '1.40'"),
        ("node:os in ['macos','windows',]", "node:os IN ['macos', 'windows']"),
        ("node:os not in [ 'linux' ]", "node:os NOT IN ['linux']"),
        ("custom:x is set", "custom:x IS SET"),
        ("custom:x not set", "custom:x NOT SET"),
    ],
)
def test_format_condition(text: str, canonical: str) -> None:
    assert format_condition(parse_condition(text)) == canonical
    assert format_condition(parse_condition(canonical)) == canonical


_keys = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}:[a-zA-Z0-9_]{1,10}", fullmatch=True)
_literals = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(alphabet=st.characters(blacklist_characters="'", blacklist_categories=("Cs",)), max_size=12),
)


@given(_keys, st.sampled_from([Op.EQ, Op.NE]), _literals)
def test_format_then_parse_round_trips(key: str, op: Op, value: Literal) -> None:
    condition = Condition(text="", key=key, op=op, operand=value)
    parsed = parse_condition(format_condition(condition))
    assert (parsed.key, parsed.op, parsed.operand, type(parsed.operand)) == (key, op, value, type(value))


@given(_keys, st.sampled_from([Op.IN, Op.NOT_IN]), st.lists(_literals, min_size=1, max_size=4).map(tuple))
def test_format_then_parse_round_trips_lists(key: str, op: Op, values: tuple[Literal, ...]) -> None:
    parsed = parse_condition(format_condition(Condition(text="", key=key, op=op, operand=values)))
    assert parsed.operand == values
    assert isinstance(parsed.operand, tuple)
    assert [type(v) for v in parsed.operand] == [type(v) for v in values]


# --- evaluation ----------------------------------------------------------------------------------------------

DEVICE: dict[str, AttributeValue] = {
    "huntress:firewallStatus": "Disabled",
    "huntress:defenderStatus": "Protected",
    "sentinelOne:activeThreats": 2,
    "sentinelOne:infected": False,
    "custom:one": 1,
    "custom:flag": True,
    "custom:text1": "1",
    "custom:zero": 0,
    "node:os": "macos",
    "node:tsVersion": "1.38.2",
    "node:osVersion": "10.0.22631.4602",
}


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        # == / != on strings, numbers, booleans
        ("huntress:firewallStatus == 'Disabled'", True),
        ("huntress:firewallStatus == 'Enabled'", False),
        ("huntress:firewallStatus == 'disabled'", False),
        ("huntress:firewallStatus != 'Enabled'", True),
        ("huntress:firewallStatus != 'Disabled'", False),
        ("sentinelOne:activeThreats == 2", True),
        ("sentinelOne:activeThreats == 0", False),
        ("sentinelOne:activeThreats != 0", True),
        ("sentinelOne:infected == false", True),
        ("sentinelOne:infected == true", False),
        ("sentinelOne:infected != true", True),
        # typed equality: bool vs 1, string vs number
        ("custom:flag == true", True),
        ("custom:flag == 1", False),
        ("custom:flag != 1", True),
        ("custom:one == 1", True),
        ("custom:one == true", False),
        ("custom:one != true", True),
        ("custom:zero == false", False),
        ("sentinelOne:infected == 0", False),
        ("custom:text1 == 1", False),
        ("custom:text1 == '1'", True),
        ("custom:one == '1'", False),
        ("custom:one != '1'", True),
        # membership
        ("node:os IN ['macos', 'windows']", True),
        ("node:os IN ['linux', 'windows']", False),
        ("node:os IN ['MacOS']", False),
        ("node:os NOT IN ['linux', 'windows']", True),
        ("node:os NOT IN ['macos', 'windows']", False),
        ("custom:one IN [true, '1']", False),
        ("custom:one IN [true, '1', 1]", True),
        ("custom:flag IN [1]", False),
        ("custom:flag NOT IN [1, 'true']", True),
        ("sentinelOne:activeThreats IN [0, 1, 2]", True),
        # set / not set
        ("huntress:firewallStatus IS SET", True),
        ("huntress:firewallStatus NOT SET", False),
        ("sentinelOne:infected IS SET", True),
        ("custom:zero IS SET", True),
        ("custom:zero NOT SET", False),
        # ordered numbers
        ("sentinelOne:activeThreats < 1", False),
        ("sentinelOne:activeThreats < 3", True),
        ("sentinelOne:activeThreats <= 2", True),
        ("sentinelOne:activeThreats <= 1", False),
        ("sentinelOne:activeThreats > 1", True),
        ("sentinelOne:activeThreats > 2", False),
        ("sentinelOne:activeThreats >= 2", True),
        ("sentinelOne:activeThreats >= 3", False),
        ("sentinelOne:activeThreats > -5", True),
        ("custom:zero >= 0", True),
        # ordered: type mismatch
        ("custom:flag < 3", False),
        ("custom:flag >= 0", False),
        ("custom:text1 >= 0", False),
        ("huntress:firewallStatus > 0", False),
        # versions
        ("node:tsVersion >= '1.40'", False),
        ("node:tsVersion < '1.40'", True),
        ("node:tsVersion >= '1.38.2'", True),
        ("node:tsVersion <= '1.38.2'", True),
        ("node:tsVersion < '1.38.2'", False),
        ("node:tsVersion > '1.38.2'", False),
        ("node:tsVersion > '1.38'", True),
        ("node:tsVersion < '1.100'", True),
        ("node:tsVersion >= 1", True),
        ("node:tsVersion < 2", True),
        ("node:osVersion >= '10.0.22631.4602'", True),
        ("node:osVersion >= '10.0.26200.7781'", False),
        ("node:osVersion >= '10.0.22631'", True),
        ("node:osVersion >= 10", True),
        ("node:osVersion > 10", True),
        ("node:osVersion < 11", True),
    ],
)
def test_evaluate_set_attributes(text: str, passed: bool) -> None:
    result = evaluate(parse_condition(text), DEVICE)
    key = result.condition.key
    assert result.passed is passed, result.reason
    assert result.is_set is True
    assert result.actual == DEVICE[key]
    assert type(result.actual) is type(DEVICE[key])
    assert result.reason.startswith(key)


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("custom:x == 'a'", False),
        ("custom:x != 'a'", False),
        ("custom:x == true", False),
        ("custom:x != false", False),
        ("custom:x == 0", False),
        ("custom:x != 0", False),
        ("custom:x IN ['a', 1, true]", False),
        ("custom:x NOT IN ['a', 1, true]", False),
        ("custom:x < 1", False),
        ("custom:x <= 1", False),
        ("custom:x > 1", False),
        ("custom:x >= -1", False),
        ("node:tsVersion >= '1.40'", False),
        ("node:tsVersion < '1.40'", False),
        ("custom:x IS SET", False),
        ("custom:x NOT SET", True),
    ],
)
def test_evaluate_unset_attribute(text: str, passed: bool) -> None:
    result = evaluate(parse_condition(text), {"custom:other": 1})
    assert result.passed is passed
    assert result.is_set is False
    assert result.actual is None
    assert result.reason == f"{result.condition.key} is not set"


def test_keys_are_case_sensitive() -> None:
    result = evaluate(parse_condition("custom:Flag IS SET"), {"custom:flag": True})
    assert (result.passed, result.is_set) == (False, False)


@pytest.mark.parametrize(
    ("text", "attributes", "reason"),
    [
        (
            "huntress:firewallStatus == 'Enabled'",
            {"huntress:firewallStatus": "Disabled"},
            "huntress:firewallStatus is 'Disabled', not 'Enabled'",
        ),
        (
            "huntress:firewallStatus == 'Enabled'",
            {"huntress:firewallStatus": "Enabled"},
            "huntress:firewallStatus is 'Enabled'",
        ),
        (
            "huntress:firewallStatus != 'Enabled'",
            {"huntress:firewallStatus": "Enabled"},
            "huntress:firewallStatus is 'Enabled', and must not be",
        ),
        ("sentinelOne:activeThreats < 1", {"sentinelOne:activeThreats": 2}, "sentinelOne:activeThreats is 2, not < 1"),
        ("sentinelOne:activeThreats < 1", {"sentinelOne:activeThreats": 0}, "sentinelOne:activeThreats is 0, < 1"),
        ("custom:x IS SET", {}, "custom:x is not set"),
        ("custom:x IS SET", {"custom:x": False}, "custom:x is set to false"),
        ("custom:x NOT SET", {"custom:x": "a"}, "custom:x is set to 'a'"),
        ("node:tsVersion >= '1.40'", {"node:tsVersion": "1.38.2"}, "node:tsVersion 1.38.2 < 1.40"),
        ("node:tsVersion >= '1.40'", {"node:tsVersion": "1.42.0"}, "node:tsVersion 1.42.0 >= 1.40"),
        ("node:tsVersion < '1.40'", {"node:tsVersion": "1.42.0"}, "node:tsVersion 1.42.0 > 1.40"),
        ("node:tsVersion < '1.40'", {"node:tsVersion": "1.40.0"}, "node:tsVersion 1.40.0 = 1.40, not < 1.40"),
        ("custom:flag == 1", {"custom:flag": True}, "custom:flag is true (a boolean), not 1 (a number)"),
        ("custom:s == 1", {"custom:s": "1"}, "custom:s is '1' (a string), not 1 (a number)"),
        (
            "node:os IN ['macos', 'windows']",
            {"node:os": "linux"},
            "node:os is 'linux', not one of ['macos', 'windows']",
        ),
        ("node:os IN ['macos', 'windows']", {"node:os": "macos"}, "node:os is 'macos', one of ['macos', 'windows']"),
        ("node:os NOT IN ['macos']", {"node:os": "macos"}, "node:os is 'macos', one of the excluded ['macos']"),
        ("custom:s >= 2", {"custom:s": "abc"}, "custom:s is 'abc' (a string), not a number, so it cannot be >= 2"),
    ],
)
def test_reasons(text: str, attributes: dict[str, AttributeValue], reason: str) -> None:
    assert evaluate(parse_condition(text), attributes).reason == reason


def test_ordered_string_comparison_built_without_the_parser_fails_with_a_reason() -> None:
    condition = Condition(text="custom:x < 'b'", key="custom:x", op=Op.LT, operand="b")
    result = evaluate(condition, {"custom:x": "a"})
    assert result.passed is False
    assert result.is_set is True
    assert "only for numbers and node:osVersion/node:tsVersion" in result.reason


def test_boolean_version_value_fails_with_a_reason() -> None:
    result = evaluate(parse_condition("node:tsVersion >= '1.40'"), {"node:tsVersion": True})
    assert result.passed is False
    assert "boolean" in result.reason


def test_version_comparison_uses_version_ordering_not_text() -> None:
    condition = parse_condition("node:tsVersion >= '1.9'")
    assert evaluate(condition, {"node:tsVersion": "1.10.0"}).passed is True
    assert evaluate(condition, {"node:tsVersion": "1.8.99"}).passed is False
    build = parse_condition("node:tsVersion >= '1.40.0'")
    assert evaluate(build, {"node:tsVersion": "1.40.0-t1234"}).passed is True
    assert evaluate(parse_condition("node:tsVersion < '1.40.1'"), {"node:tsVersion": "1.40.0-t1234"}).passed is True
