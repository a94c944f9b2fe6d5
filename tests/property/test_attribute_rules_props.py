"""Properties of the built-in store's attribute rules (README) over arbitrary keys, values, expiries, comments.

For any sequence of writes (single ``set_attribute`` or batched ``set_many``, by device id or nodeId, by a
person or by the EDR sync's trusted actor, with the clock moving in between) the store either applies the
whole write or raises ``RuleViolation`` and changes nothing; it refuses exactly when ``rules.validate_*``
and the key registry say so (same rule); and everything it holds afterwards passes the README's attribute rules checked
independently of ``app.tailnet.rules``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from app.core.clock import FrozenClock
from app.core.timefmt import ZERO_TIME
from app.db import Database
from app.db.tables import AttributeKeyRow, AttributeRow
from app.tailnet import rules
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import RuleViolation
from app.tailnet.models import Actor, AttributeChanges, AttributeWrite, Device
from tests.conftest import START
from tests.property import (
    MAX_SAFE_INTEGER,
    TRUSTED_NAMESPACES,
    ZERO_INSTANT,
    facts_problems,
    store_problems,
    store_snapshot,
)

PERSON = Actor("cli:prop")
SYNC = Actor.system("sync:huntress", "huntress")
ALL_NAMESPACES = frozenset({"custom"}) | TRUSTED_NAMESPACES
FIXTURE_CHECKS = [HealthCheck.function_scoped_fixture]  # the store is emptied at the start of every example

# -- strategies ---------------------------------------------------------------------------------------

ZONES = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(hours=14))]

POOL_KEYS = [
    "custom:prodAccess",
    "custom:PRODACCESS",
    "custom:prodaccess",
    "custom:tier",
    "custom:Tier",
    "custom:a:b",
    "custom:" + "x" * 43,  # 50 characters
    "custom:" + "x" * 44,  # 51
    "huntress:firewallStatus",
    "huntress:FirewallStatus",
    "sentinelOne:activeThreats",
    "node:os",
    "ip:country",
    "Custom:prodAccess",
    "custom:",
    "custom",
    ":x",
    "",
]
valid_keys = st.one_of(
    st.sampled_from(["custom:prodAccess", "custom:PRODACCESS", "custom:tier", "huntress:firewallStatus"]),
    st.from_regex(r"custom:[A-Za-z0-9_]{1,43}", fullmatch=True),
)
keys = st.one_of(
    valid_keys,
    valid_keys,
    valid_keys,
    st.sampled_from(POOL_KEYS),
    st.builds(
        "{}:{}".format,
        st.sampled_from(["custom", "huntress", "sentinelOne", "node", "ip", "CUSTOM", "other"]),
        st.from_regex(r"[A-Za-z0-9_:]{0,46}", fullmatch=True),
    ),
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="ascii"), max_size=55),
)

huge_ints = st.builds(
    lambda n, sign: n * sign,
    st.sampled_from([MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, 2**63])
    | st.builds(pow, st.just(10), st.sampled_from([30, 5000])),
    st.sampled_from([1, -1]),
)
valid_values = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.]{1,50}", fullmatch=True),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
)
control_text = st.text(alphabet=st.characters(categories=["Cc", "Cs", "Cf", "Zs", "Zl"]), min_size=1, max_size=5)
scalars = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.]{1,50}", fullmatch=True),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=-MAX_SAFE_INTEGER - 3, max_value=MAX_SAFE_INTEGER + 3),
    huge_ints,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.sampled_from(["Non Compliant", "Pending Isolation", "Enabled", "na", "22.3.2.23"]),
    st.text(max_size=110),
    control_text,
    st.from_regex(r"[A-Za-z0-9_.]{51,60}", fullmatch=True),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
values = st.one_of(scalars, json_values)


def rfc3339(moment: datetime, style: int) -> str:
    """``moment`` written the ways clients write RFC 3339."""
    if style == 0:
        return moment.isoformat()
    if style == 1:
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if style == 2:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat().lower()


def instant_written(moment: datetime, style: int) -> datetime:
    """The instant ``rfc3339(moment, style)`` names (styles 1 and 2 drop sub-second digits)."""
    if style == 1:
        return moment.replace(microsecond=0)
    if style == 2:
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment


moments = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.sampled_from(ZONES)
    ),
    st.builds(
        lambda seconds, zone: (START + timedelta(seconds=seconds)).astimezone(zone),
        st.integers(min_value=-(10**6), max_value=10**8),
        st.sampled_from(ZONES),
    ),
    st.builds(
        lambda day, zone: datetime(1, 1, 1, tzinfo=UTC) + timedelta(days=day) if zone is UTC else ZERO_INSTANT,
        st.integers(min_value=0, max_value=400),
        st.sampled_from(ZONES),
    ),
)
raw_expiries = st.one_of(
    st.none(),
    st.just(""),
    st.just(ZERO_TIME),
    st.sampled_from(["0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59-01:00"]),
    st.builds(rfc3339, moments, st.integers(min_value=0, max_value=3)),
    st.text(max_size=40),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
comments = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=60),
    st.text(min_size=199, max_size=202),
    control_text,
    st.integers(),
)


@dataclass(frozen=True)
class Write:
    """Set (``delete`` False) or delete one key on device number ``device``, referred to by id or nodeId."""

    device: int
    by_node_id: bool
    key: Any
    value: Any = None
    expiry: Any = None
    delete: bool = False


@dataclass(frozen=True)
class Batch:
    """One call: ``set_attribute`` when ``single``, else ``set_many``."""

    writes: tuple[Write, ...]
    comment: Any
    trusted: bool
    single: bool


@dataclass(frozen=True)
class Advance:
    """Move the clock."""

    seconds: int


writes = st.builds(
    Write,
    device=st.integers(min_value=0, max_value=2),
    by_node_id=st.booleans(),
    key=keys,
    value=values,
    expiry=st.one_of(st.none(), st.none(), raw_expiries),
    delete=st.sampled_from([False, False, True]),
)
single_writes = st.builds(
    Batch,
    writes=st.tuples(writes.map(lambda w: Write(w.device, w.by_node_id, w.key, w.value, w.expiry))),
    comment=comments,
    trusted=st.booleans(),
    single=st.just(True),
)
batches = st.builds(
    Batch,
    writes=st.lists(writes, min_size=1, max_size=4).map(tuple),
    comment=comments,
    trusted=st.booleans(),
    single=st.just(False),
)
aliased_batches = st.builds(
    Batch,
    writes=st.lists(
        st.builds(
            Write,
            device=st.integers(min_value=0, max_value=1),
            by_node_id=st.booleans(),
            key=st.sampled_from(["custom:prodAccess", "custom:PRODACCESS", "custom:tier"]),
            value=st.sampled_from([True, False, 1, 7, "on"]),
            expiry=st.sampled_from([None, "2026-11-21T12:01:00Z", "2026-11-21T13:00:00+01:00"]),
            delete=st.booleans(),
        ),
        min_size=2,
        max_size=4,
    ).map(tuple),
    comment=st.none(),
    trusted=st.just(False),
    single=st.just(False),
)
"""Batches that name one device by id and by nodeId, with few keys: several changes of one attribute."""
operations = st.one_of(
    single_writes,
    batches,
    aliased_batches,
    st.builds(Advance, st.sampled_from([1, 59, 60, 3600, 86400 * 400])),
)


# -- the oracle ---------------------------------------------------------------------------------------


Model = dict[tuple[str, str], AttributeWrite]
"""(device id, key) → what the store should show."""


def changes_of(batch: Batch, devices: list[Device], expiries: list[datetime | None]) -> AttributeChanges:
    """The ``set_many`` argument for ``batch`` (later writes of one ref and key replace earlier ones)."""
    changes: AttributeChanges = {}
    for write, expiry in zip(batch.writes, expiries, strict=True):
        device = devices[write.device]
        ref = device.node_id if write.by_node_id else device.id
        changes.setdefault(ref, {})[write.key] = None if write.delete else AttributeWrite(write.value, expiry)
    return changes


def expected_outcome(
    changes: AttributeChanges, comment: Any, actor: Actor, model: Model, now: datetime, devices: list[Device]
) -> tuple[str | None, Model]:
    """(the rule the store must refuse with, or ``None``; the model after) — from ``rules`` and the model.

    The order is the store's: the comment, then each change's key, value, expiry and its type against the
    batch so far; only then each write against the keys live in the tailnet.
    """
    try:
        rules.validate_comment(comment)
        seen: dict[str, tuple[str, str]] = {}
        checked: list[tuple[str, str, AttributeWrite | None]] = []
        for ref, per_key in changes.items():
            for key, write in per_key.items():
                namespace = rules.validate_key(key, actor.namespaces)
                if write is not None:
                    value = rules.validate_value(write.value, namespace)
                    expiry = rules.validate_expiry(write.expiry, now)
                    kind = rules.value_type(value)
                    earlier = seen.get(rules.fold_key(key))
                    if earlier is not None:
                        rules.check_key_registry(key, kind, *earlier)
                    seen[rules.fold_key(key)] = (key, kind)
                    write = AttributeWrite(value, expiry)
                checked.append((ref, key, write))
        live = {k: w for k, w in model.items() if w.expiry is None or w.expiry > now}
        for _ref, key, write in checked:
            if write is None:
                continue
            holders = [(k, w) for (_d, k), w in live.items() if rules.fold_key(k) == rules.fold_key(key)]
            if holders:
                spelled, held = holders[0]
                rules.check_key_registry(key, rules.value_type(write.value), spelled, rules.value_type(held.value))
    except RuleViolation as exc:
        return exc.rule, model
    by_ref = {ref: d.id for d in devices for ref in (d.id, d.node_id)}
    after = dict(live)
    for ref, key, write in checked:
        if write is None:
            after.pop((by_ref[ref], key), None)
        else:
            after[(by_ref[ref], key)] = write
    return None, after


def visible(store: BuiltinTailnet, devices: list[Device]) -> Model:
    """What the store shows: every device's written attributes with their expiries."""
    out: Model = {}
    for device in devices:
        attrs = store.get_attributes(device.id)
        for key, value in attrs.attributes.items():
            if not key.startswith("node:"):
                out[(device.id, key)] = AttributeWrite(value, attrs.expiries.get(key))
    return out


def typed(model: Model) -> dict[tuple[str, str], tuple[type, Any, datetime | None]]:
    """A model compared with value types (``True`` is not ``1``)."""
    return {k: (type(w.value), w.value, w.expiry) for k, w in model.items()}


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def devices(builtin: BuiltinTailnet) -> list[Device]:
    owner = Actor("cli:setup")
    return [
        builtin.add_device(name="laptop.tail1.ts.net", user="a@example.com", os="macos", actor=owner),
        builtin.add_device(name="server.tail1.ts.net", user="b@example.com", os="linux", actor=owner),
        builtin.add_device(name="phone.tail1.ts.net", user="a@example.com", os="ios", actor=owner),
    ]


@pytest.fixture
def fresh(db: Database) -> Iterator[Any]:
    """Call to empty the store's attributes and get a tailnet on a new clock at ``START``."""

    def reset() -> BuiltinTailnet:
        with db.session() as session:
            session.execute(delete(AttributeRow))
            session.execute(delete(AttributeKeyRow))
        return BuiltinTailnet(db, clock=FrozenClock(START))

    yield reset


# -- properties ---------------------------------------------------------------------------------------


def _aliased(*writes: tuple[bool, bool]) -> Batch:
    """A batch on device 0 of ``custom:prodAccess``: (by nodeId, delete) per change."""
    return Batch(
        tuple(Write(0, node, "custom:prodAccess", True, None, gone) for node, gone in writes), None, False, False
    )


@settings(max_examples=300, deadline=timedelta(seconds=3), suppress_health_check=FIXTURE_CHECKS)
@given(ops=st.lists(operations, min_size=1, max_size=5))
@example(ops=[_aliased((False, False), (True, True))])  # set by id, delete by nodeId: a pending row was deleted
@example(ops=[_aliased((False, False)), _aliased((False, True), (True, False))])  # delete, set: INSERT before DELETE
def test_the_store_applies_a_write_whole_or_refuses_it_by_the_rules(
    db: Database, devices: list[Device], fresh: Any, ops: list[Batch | Advance]
) -> None:
    store: BuiltinTailnet = fresh()
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    model: Model = {}
    for op in ops:
        if isinstance(op, Advance):
            clock.advance(seconds=op.seconds)
            model = {k: w for k, w in model.items() if w.expiry is None or w.expiry > clock()}
            assert typed(visible(store, devices)) == typed(model)
            continue
        actor = SYNC if op.trusted else PERSON
        before = store_snapshot(db)
        try:
            expiries = [None if w.delete else rules.parse_expiry_field(w.expiry) for w in op.writes]
        except RuleViolation:
            continue  # refused before reaching the store, as the API does
        changes = changes_of(op, devices, expiries)
        rule, after = expected_outcome(changes, op.comment, actor, model, clock(), devices)
        try:
            if op.single:
                [(ref, per_key)] = changes.items()
                [(key, write)] = per_key.items()
                assert write is not None
                store.set_attribute(ref, key, write.value, actor=actor, expiry=write.expiry, comment=op.comment)
            else:
                store.set_many(changes, actor=actor, comment=op.comment)
        except RuleViolation as exc:
            event(f"refused: {exc.rule}")
            assert exc.rule == rule, f"the store refused with {exc.rule} ({exc.message}); the rules say {rule}"
            assert exc.message
            assert store_snapshot(db) == before, "a refused write changed the store"
        else:
            assert rule is None, f"the store accepted what breaks {rule}"
            event("applied")
            model = after
        assert typed(visible(store, devices)) == typed(model)
        assert store_problems(db, clock(), ALL_NAMESPACES) == []
        for (_device, key), write in model.items():
            assert facts_problems(key, write.value, write.expiry, clock(), ALL_NAMESPACES) == []


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(key=keys, value=values, namespace_of_writer=st.sampled_from([PERSON, SYNC]))
def test_rules_accept_exactly_what_facts_allow(key: Any, value: Any, namespace_of_writer: Actor) -> None:
    """``validate_key`` + ``validate_value`` agree with the README's attribute rules written out independently."""
    now = START
    try:
        namespace = rules.validate_key(key, namespace_of_writer.namespaces)
        checked = rules.validate_value(value, namespace)
    except RuleViolation as exc:
        assert exc.message and exc.rule
        assert facts_problems(key, value, None, now, namespace_of_writer.namespaces), (
            f"rules refused {key!r}={value!r} ({exc.rule}) that the README allows"
        )
        return
    assert checked == value and type(checked) is type(value)
    assert facts_problems(key, value, None, now, namespace_of_writer.namespaces) == []


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(moment=moments, style=st.integers(min_value=0, max_value=3))
def test_an_expiry_field_means_the_instant_it_names(moment: datetime, style: int) -> None:
    """Only the zero time means "no expiry"; any other timestamp is that instant (or refused as out of range)."""
    text = rfc3339(moment, style)
    moment = instant_written(moment, style)
    try:
        parsed = rules.parse_expiry_field(text)
    except RuleViolation as exc:
        assert exc.rule == "expiry_format"
        with pytest.raises(OverflowError):
            moment.astimezone(UTC)  # only an instant that UTC cannot hold may be refused
        return
    if moment == ZERO_INSTANT:
        assert parsed is None
    else:
        assert parsed == moment, f"{text!r} was read as {parsed!r}"
        assert parsed.utcoffset() == timedelta(0)


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(raw=raw_expiries, now_offset=st.integers(min_value=-(10**6), max_value=10**6))
def test_expiry_rules_never_fail_other_than_by_rule_violation(raw: Any, now_offset: int) -> None:
    now = START + timedelta(seconds=now_offset)
    try:
        expiry = rules.validate_expiry(rules.parse_expiry_field(raw), now)
    except RuleViolation as exc:
        assert exc.rule in ("expiry_format", "expiry_past") and exc.message
        return
    assert expiry is None or (expiry.tzinfo is not None and expiry > now)
    if expiry is None:
        assert raw in (None, "") or rules.parse_expiry_field(raw) is None


@settings(max_examples=200, deadline=timedelta(milliseconds=500))
@given(comment=comments)
def test_comment_rule(comment: Any) -> None:
    try:
        checked = rules.validate_comment(comment)
    except RuleViolation as exc:
        assert exc.message
        assert not isinstance(comment, str) or len(comment) > 200 or not _storable(comment)
        return
    assert checked is None or (isinstance(checked, str) and 0 < len(checked) <= 200 and _storable(checked))
    assert checked == (comment or None)


def _storable(text: str) -> bool:
    """Text every supported database stores: no NUL (PostgreSQL) and no lone surrogates (UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
