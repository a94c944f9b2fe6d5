"""Behaviour of the built-in tailnet store: rules across devices, expiry, batches, audit."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables import AttributeKeyRow, AttributeRow
from app.tailnet.builtin import EXPIRY_ACTOR, BuiltinTailnet
from app.tailnet.errors import DeviceNotFound, NotFound, RuleViolation
from app.tailnet.models import Actor, AttributeWrite, Device

SYNC = Actor.system("sync:huntress", "huntress")


@pytest.fixture
def two(builtin: BuiltinTailnet, actor: Actor) -> tuple[Device, Device]:
    a = builtin.add_device(name="alpha.tail1.ts.net", user="a@example.com", serial_numbers=["S-A"], actor=actor)
    b = builtin.add_device(name="bravo.tail1.ts.net", user="b@example.com", actor=actor)
    return a, b


def attribute_events(db: Database) -> list[audit.AuditEvent]:
    with db.session() as session:
        return audit.query(session, action="Update node attribute")


def test_set_and_get_in_api_shape(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, clock: FrozenClock
) -> None:
    a, _ = two
    expiry = clock() + timedelta(hours=1)
    builtin.set_attribute(a.id, "custom:prodAccess", True, actor=actor, expiry=expiry, comment="because")
    builtin.set_attribute(a.node_id, "custom:tier", 3, actor=actor)
    assert builtin.get_attributes(a.node_id).to_api() == {
        "attributes": {"custom:prodAccess": True, "custom:tier": 3},
        "expiries": {"custom:prodAccess": "2026-11-21T13:00:00Z"},
    }


def test_expiries_omitted_when_none(builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor) -> None:
    builtin.set_attribute(two[0].id, "custom:x", "y", actor=actor)
    assert builtin.get_attributes(two[0].id).to_api() == {"attributes": {"custom:x": "y"}}


def test_expired_attribute_is_never_returned_and_is_purged_with_audit(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, clock: FrozenClock, db: Database
) -> None:
    a, _ = two
    expiry = clock() + timedelta(minutes=1)
    builtin.set_attribute(a.id, "custom:prodAccess", True, actor=actor, expiry=expiry)
    clock.advance(seconds=59)
    assert builtin.get_attributes(a.id).attributes == {"custom:prodAccess": True}
    clock.advance(seconds=1)  # exactly at the expiry: gone
    assert builtin.get_attributes(a.id).attributes == {}
    assert builtin.purge_expired() == 1
    assert builtin.purge_expired() == 0
    events = attribute_events(db)
    assert [(e.actor, e.details["change"], e.old_value, e.new_value) for e in events] == [
        ("cli:tester", "set", None, True),
        (EXPIRY_ACTOR, "expire", True, None),
    ]
    assert events[1].at == expiry
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AttributeRow)) == 0
        assert session.scalar(select(func.count()).select_from(AttributeKeyRow)) == 0


def test_type_is_fixed_across_devices(builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor) -> None:
    a, b = two
    builtin.set_attribute(a.id, "custom:level", 1, actor=actor)
    with pytest.raises(RuleViolation) as info:
        builtin.set_attribute(b.id, "custom:level", "high", actor=actor)
    assert info.value.rule == "value_type_conflict"
    with pytest.raises(RuleViolation):
        builtin.set_attribute(b.id, "custom:level", True, actor=actor)
    builtin.set_attribute(b.id, "custom:level", 2, actor=actor)
    assert builtin.get_attributes(b.id).attributes == {"custom:level": 2}


def test_keys_are_unique_regardless_of_case(builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor) -> None:
    a, b = two
    builtin.set_attribute(a.id, "custom:MyAttr", True, actor=actor)
    for device in (a, b):
        with pytest.raises(RuleViolation) as info:
            builtin.set_attribute(device.id, "custom:myattr", True, actor=actor)
        assert info.value.rule == "key_case_conflict"
        assert "custom:MyAttr" in info.value.message


def test_type_can_change_once_the_key_is_gone(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor
) -> None:
    a, b = two
    builtin.set_attribute(a.id, "custom:k", True, actor=actor)
    builtin.delete_attribute(a.id, "custom:k", actor=actor)
    builtin.set_attribute(b.id, "custom:K", "now_a_string", actor=actor)
    assert builtin.get_attributes(b.id).attributes == {"custom:K": "now_a_string"}


def test_conflict_with_only_expired_values_is_no_conflict(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, clock: FrozenClock
) -> None:
    a, b = two
    builtin.set_attribute(a.id, "custom:k", True, actor=actor, expiry=clock() + timedelta(minutes=5))
    clock.advance(minutes=6)
    builtin.set_attribute(b.id, "custom:k", 5, actor=actor)
    assert builtin.get_attributes(b.id).attributes == {"custom:k": 5}


def test_overwriting_keeps_one_row_and_audits_old_value(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, db: Database, clock: FrozenClock
) -> None:
    a, _ = two
    builtin.set_attribute(a.id, "custom:n", 1, actor=actor, expiry=clock() + timedelta(hours=1))
    builtin.set_attribute(a.id, "custom:n", 2, actor=actor)
    assert builtin.get_attributes(a.id).to_api() == {"attributes": {"custom:n": 2}}
    assert [(e.old_value, e.new_value) for e in attribute_events(db)] == [(None, 1), (1, 2)]


def test_rule_violations_write_nothing(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, db: Database, clock: FrozenClock
) -> None:
    a, _ = two
    bad = [
        ("huntress:firewallStatus", "Enabled", None, None),
        ("custom:" + "x" * 44, True, None, None),
        ("custom:v", 2**53, None, None),
        ("custom:v", 1.5, None, None),
        ("custom:v", "Non Compliant", None, None),
        ("custom:v", True, clock() - timedelta(seconds=1), None),
        ("custom:v", True, None, "c" * 201),
    ]
    for key, value, expiry, comment in bad:
        with pytest.raises(RuleViolation):
            builtin.set_attribute(a.id, key, value, actor=actor, expiry=expiry, comment=comment)
    assert builtin.get_attributes(a.id).attributes == {}
    assert attribute_events(db) == []


def test_trusted_writer_keeps_vendor_values_verbatim(builtin: BuiltinTailnet, two: tuple[Device, Device]) -> None:
    a, _ = two
    builtin.set_attribute(a.id, "huntress:defenderPolicyStatus", "Non Compliant", actor=SYNC)
    assert builtin.get_attributes(a.id).attributes == {"huntress:defenderPolicyStatus": "Non Compliant"}
    with pytest.raises(RuleViolation):
        builtin.set_attribute(a.id, "sentinelOne:infected", True, actor=SYNC)


def test_outside_writer_cannot_delete_vendor_attribute(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor
) -> None:
    a, _ = two
    builtin.set_attribute(a.id, "huntress:firewallStatus", "Enabled", actor=SYNC)
    with pytest.raises(RuleViolation):
        builtin.delete_attribute(a.id, "huntress:firewallStatus", actor=actor)
    builtin.delete_attribute(a.id, "huntress:firewallStatus", actor=SYNC)
    assert builtin.get_attributes(a.id).attributes == {}


def test_delete_missing_attribute_and_unknown_device(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor
) -> None:
    with pytest.raises(NotFound):
        builtin.delete_attribute(two[0].id, "custom:none", actor=actor)
    with pytest.raises(DeviceNotFound):
        builtin.get_attributes("nope")
    with pytest.raises(DeviceNotFound):
        builtin.set_attribute("nope", "custom:x", True, actor=actor)


def test_set_many_is_atomic(builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, db: Database) -> None:
    a, b = two
    builtin.set_attribute(a.id, "custom:old", True, actor=actor)
    with pytest.raises(RuleViolation):
        builtin.set_many(
            {
                a.id: {"custom:ok": AttributeWrite(1), "custom:old": None},
                b.id: {"custom:ok": AttributeWrite("s")},
            },
            actor=actor,
        )
    with pytest.raises(DeviceNotFound):
        builtin.set_many(
            {a.id: {"custom:ok": AttributeWrite(1)}, "ghost": {"custom:ok": AttributeWrite(2)}}, actor=actor
        )
    assert builtin.get_attributes(a.id).attributes == {"custom:old": True}
    assert builtin.get_attributes(b.id).attributes == {}

    builtin.set_many(
        {a.id: {"custom:ok": AttributeWrite(1), "custom:old": None}, b.id: {"custom:ok": AttributeWrite(2)}},
        actor=actor,
        comment="batch",
    )
    assert builtin.get_attributes(a.id).attributes == {"custom:ok": 1}
    assert builtin.get_attributes(b.id).attributes == {"custom:ok": 2}
    changes = [(e.details["change"], e.comment) for e in attribute_events(db)]
    assert changes[-3:] == [("set", "batch"), ("delete", "batch"), ("set", "batch")]


def test_set_many_rejects_case_collision_inside_one_batch(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor
) -> None:
    a, b = two
    with pytest.raises(RuleViolation) as info:
        builtin.set_many(
            {a.id: {"custom:Dup": AttributeWrite(True)}, b.id: {"custom:dup": AttributeWrite(True)}},
            actor=actor,
        )
    assert info.value.rule == "key_case_conflict"


def test_deleting_a_device_row_removes_its_attributes(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, db: Database
) -> None:
    builtin.set_attribute(two[0].id, "custom:x", True, actor=actor)
    with db.session() as session:
        session.execute(text("DELETE FROM devices WHERE id = :id"), {"id": two[0].id})
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AttributeRow)) == 0


def test_audit_log_is_append_only(
    builtin: BuiltinTailnet, two: tuple[Device, Device], actor: Actor, db: Database
) -> None:
    builtin.set_attribute(two[0].id, "custom:x", True, actor=actor)
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
            session.execute(text(statement))


def test_import_creates_then_updates(builtin: BuiltinTailnet, actor: Actor) -> None:
    payload = [
        {
            "id": "111",
            "nodeId": "nAAA111CNTRL",
            "name": "db1.tail1.ts.net",
            "hostname": "db1",
            "user": "ops@example.com",
            "os": "linux",
            "tags": ["tag:prod"],
            "lastSeen": "2026-11-20T10:00:00Z",
            "clientVersion": "1.76.1-t123-gabc",
            "authorized": True,
            "postureIdentity": {"serialNumbers": ["SER1", "SER2"], "disabled": False},
        }
    ]
    assert builtin.import_devices(payload, actor=actor) == (1, 0)
    payload[0]["hostname"] = "db1-renamed"
    assert builtin.import_devices(payload, actor=actor) == (0, 1)
    device = builtin.get_device("nAAA111CNTRL")
    assert device.hostname == "db1-renamed"
    assert device.serial_numbers == ("SER1", "SER2")
    assert device.tags == ("tag:prod",)
    assert device.raw["authorized"] is True


def test_import_matches_by_id_or_node_id_and_a_device_listed_twice_is_one_device(
    builtin: BuiltinTailnet, actor: Actor
) -> None:
    def device(i: int, **extra: object) -> dict[str, object]:
        return {"id": str(1000 + i), "nodeId": f"n{i:04d}CNTRL", "name": f"h{i}.tail1.ts.net", "os": "linux", **extra}

    many = [device(i) for i in range(1200)]  # more than one chunk of lookups
    assert builtin.import_devices(many, actor=actor) == (1200, 0)
    renumbered = {**device(5), "id": "999999", "hostname": "same-node-new-id"}  # matched by its nodeId
    twice = [device(7, hostname="first"), device(7, hostname="second")]
    fresh = [device(5000), device(5000, hostname="listed-again")]
    assert builtin.import_devices([renumbered, *twice, *fresh], actor=actor) == (1, 4)
    assert builtin.get_device("n0005CNTRL").hostname == "same-node-new-id"
    assert builtin.get_device("1007").hostname == "second"
    assert builtin.get_device("n5000CNTRL").hostname == "listed-again"
    assert len(builtin.list_devices()) == 1201


def test_concurrent_first_writes_agree_on_one_type(db: Database, clock: FrozenClock, actor: Actor) -> None:
    """Two writers race to create a key with different types: exactly one wins, the store stays consistent."""
    store = BuiltinTailnet(db, clock=clock)
    devices = [store.add_device(name=f"d{i}", user="u@example.com", actor=actor) for i in range(2)]
    for round_ in range(5):
        key = f"custom:race{round_}"
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def write(
            device: Device,
            value: object,
            key: str = key,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                BuiltinTailnet(db, clock=clock).set_attribute(device.id, key, value, actor=actor)  # type: ignore[arg-type]
                outcomes.append("ok")
            except RuleViolation as exc:
                outcomes.append(exc.rule)

        threads = [
            threading.Thread(target=write, args=(devices[0], True)),
            threading.Thread(target=write, args=(devices[1], 7)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["ok", "value_type_conflict"]
        values = [store.get_attributes(d.id).attributes.get(key) for d in devices]
        assert len([v for v in values if v is not None]) == 1


def test_batch_audit_details_are_the_json_of_the_change(builtin: BuiltinTailnet, actor: Actor, db: Database) -> None:
    """A sync batch's audit details are joined from pre-encoded parts: the stored text must be exactly what
    encoding the details object gives, through the bulk path (>= 500 rows) and the plain one."""
    payload = [
        {"id": f"{n}", "nodeId": f"n{n:04d}CNTRL", "name": f"host-{n}.tail1.ts.net", "user": "ops@example.com"}
        for n in range(120)
    ]
    builtin.import_devices(payload, actor=actor)
    keys = [f"huntress:k{n}" for n in range(5)]
    builtin.set_many({d["id"]: {k: AttributeWrite(f"v-{k}") for k in keys} for d in payload}, actor=SYNC)
    builtin.set_many({d["id"]: {keys[0]: None} for d in payload}, actor=SYNC)
    with db.session() as session:
        stored = session.execute(
            text("SELECT target, CAST(details AS TEXT) FROM audit_events WHERE action = 'Update node attribute'")
        ).all()
    assert len(stored) == 120 * 5 + 120
    names = {d["id"]: d["name"] for d in payload}
    sets = 0
    for target, details in stored:
        _, device_id, _, key = target.split("/")
        change = "set" if json.loads(details)["change"] == "set" else "delete"
        sets += change == "set"
        expected = {"device_id": device_id, "device": names[device_id], "key": key, "change": change}
        assert details == json.dumps(expected)
    assert sets == 600
