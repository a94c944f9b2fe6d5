"""Upgrading a database written by release 0001 (built-in tailnet only) to the current schema.

The rows are written with plain SQL in the shape release 0001's code stored them (JSON columns as JSON text,
timestamps as SQLAlchemy stores them, secrets hashed), then the database is upgraded to head and used through
today's code: the built-in tailnet reads the old devices and attributes and keeps enforcing the old key
registry, the old API key still authenticates, the append-only audit log keeps its history and its trigger,
and the tables added since (access requests, the outbox, integrations, sync state) work. Finally the schema
goes down to base and up again.

SQLite always; PostgreSQL when ``ACCESSBOT_TEST_DATABASE_URL`` is set, in a schema of its own (so the shared
test database's ``public`` schema is left alone).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from app.access.lifecycle import Lifecycle
from app.access.outbox import Outbox
from app.access.read_model import AccessAudit, Notice
from app.config.model import Config
from app.core.crypto import Cipher
from app.db import Database, audit
from app.db.migrate import alembic_config, current_revision, head_revision, upgrade
from app.db.session import make_engine
from app.db.tables import access as access_models
from app.db.tables import vendors as vendor_models
from app.tailnet.auth import AuthStore, format_api_key, hash_secret
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import RuleViolation
from app.tailnet.models import Actor
from app.vendors.integrations import Integrations
from tests.conftest import PG_URL, written
from tests.schema import schema_diff

assert access_models and vendor_models  # their tables are part of Base.metadata

NOW = datetime.now(UTC).replace(microsecond=0)
LAPTOP = "1234567890123456"
SERVER = "2234567890123457"
KEY_ID = "kQ3v9XbN7pLm2CNTRL"
KEY_SECRET = "s3cretValueOfTheApiKeyFromRelease0001xyz"
TABLES_0001 = {
    "api_keys",
    "attribute_keys",
    "audit_events",
    "device_attributes",
    "devices",
    "oauth_clients",
    "oauth_tokens",
    "remote_expiries",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database: a new SQLite file, or a new schema of the PostgreSQL test database."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'release-0001.db'}")
        yield db
        db.dispose()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL: set ACCESSBOT_TEST_DATABASE_URL to run this test against it")
    schema = f"mig_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}))
    try:
        yield db
    finally:
        db.dispose()
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Release0001Writer:
    """Plain SQL inserts with values as release 0001 stored them on this dialect."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pg = db.dialect == "postgresql"

    def ts(self, when: datetime) -> Any:
        # SQLAlchemy's SQLite DateTime stores naive UTC text; PostgreSQL has timestamptz
        return when if self.pg else when.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")

    def insert(self, table: str, row: dict[str, Any], json_columns: tuple[str, ...] = ()) -> None:
        names = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join(
            (f"CAST(:{c} AS JSON)" if self.pg else f":{c}") if c in json_columns else f":{c}" for c in row
        )
        values = {c: json.dumps(v) if c in json_columns else v for c, v in row.items()}
        with self.db.engine.begin() as conn:
            conn.execute(text(f'INSERT INTO "{table}" ({names}) VALUES ({marks})'), values)


def write_release_0001_data(db: Database) -> None:
    """Two devices, three attribute keys, attributes (one already expired), an API key and their audit trail."""
    w = Release0001Writer(db)
    device_json = ("tags", "addresses", "serial_numbers", "extra")
    w.insert(
        "devices",
        {
            "id": LAPTOP,
            "node_id": "nRiTaLaPtoP1CNTRL",
            "name": "rita-laptop.tail1.ts.net",
            "hostname": "rita-laptop",
            "user": "rita@example.com",
            "os": "macOS",
            "client_version": "1.76.1-t1234abcd",
            "tags": [],
            "addresses": ["100.64.0.10", "fd7a:115c:a1e0::a"],
            "serial_numbers": ["C02RITA"],
            "posture_identity_disabled": False,
            "last_seen": w.ts(NOW - timedelta(minutes=3)),
            "created": w.ts(NOW - timedelta(days=40)),
            "extra": {"machineKey": "mkey:abc123", "isExternal": False},
        },
        device_json,
    )
    w.insert(
        "devices",
        {
            "id": SERVER,
            "node_id": "nDbPr0d0001CNTRL",
            "name": "db-prod-1.tail1.ts.net",
            "hostname": "db-prod-1",
            "user": "ops@example.com",
            "os": "linux",
            "client_version": "1.76.1",
            "tags": ["tag:prod", "tag:db"],
            "addresses": ["100.64.0.20"],
            "serial_numbers": [],
            "posture_identity_disabled": True,
            "last_seen": None,
            "created": w.ts(NOW - timedelta(days=90)),
            "extra": {},
        },
        device_json,
    )
    for key_id, key, kind in (
        (1, "custom:prodAccess", "boolean"),
        (2, "huntress:firewallStatus", "string"),
        (3, "custom:tier", "number"),
    ):
        w.insert("attribute_keys", {"id": key_id, "key": key, "key_folded": key.casefold(), "value_type": kind})
    attributes = [
        (1, LAPTOP, 1, True, NOW + timedelta(hours=2), "rita via accessbot: incident 42", "cli:alice"),
        (2, LAPTOP, 2, "Enabled", None, "accessbot Huntress sync", "system:sync:huntress"),
        (3, LAPTOP, 3, 3, None, None, "apikey:" + KEY_ID),
        (4, SERVER, 1, True, NOW - timedelta(hours=1), "yesterday's incident", "cli:alice"),
    ]
    for attr_id, device, key_id, value, expires, comment, by in attributes:
        w.insert(
            "device_attributes",
            {
                "id": attr_id,
                "device_id": device,
                "key_id": key_id,
                "value": value,
                "expires_at": w.ts(expires) if expires else None,
                "comment": comment,
                "updated_at": w.ts(NOW - timedelta(hours=2)),
                "updated_by": by,
            },
            ("value",),
        )
    w.insert(
        "api_keys",
        {
            "id": KEY_ID,
            "secret_hash": hash_secret(KEY_SECRET),
            "description": "local curl",
            "created_at": w.ts(NOW - timedelta(days=30)),
            "created_by": "cli:alice",
            "expires_at": w.ts(NOW + timedelta(days=60)),
            "revoked_at": None,
            "last_used_at": None,
        },
    )
    events = [
        (NOW - timedelta(days=90), "cli:alice", "Add device", f"device/{SERVER}", None, {"name": "db-prod-1"}, None),
        (NOW - timedelta(days=40), "cli:alice", "Add device", f"device/{LAPTOP}", None, {"name": "rita-laptop"}, None),
        (NOW - timedelta(days=30), "cli:alice", "Create API key", f"apikey/{KEY_ID}", None, None, None),
        (
            NOW - timedelta(hours=2),
            "cli:alice",
            "Update node attribute",
            f"device/{LAPTOP}/attributes/custom:prodAccess",
            None,
            True,
            NOW + timedelta(hours=2),
        ),
        (
            NOW - timedelta(hours=2),
            "system:sync:huntress",
            "Update node attribute",
            f"device/{LAPTOP}/attributes/huntress:firewallStatus",
            "Disabled",
            "Enabled",
            None,
        ),
    ]
    for at, actor, action, target, old, new, expiry in events:
        w.insert(
            "audit_events",
            {
                "at": w.ts(at),
                "actor": actor,
                "action": action,
                "target": target,
                "old_value": old,
                "new_value": new,
                "expiry": w.ts(expiry) if expiry else None,
                "comment": None,
                "details": {"release": "0001"},
            },
            ("old_value", "new_value", "details"),
        )


def test_release_0001_data_survives_the_upgrade_and_the_schema_cycles(empty_db: Database) -> None:
    db = empty_db
    upgrade(db.engine, "0001")
    assert current_revision(db.engine) == "0001"
    assert set(inspect(db.engine).get_table_names()) - {"alembic_version"} == TABLES_0001
    write_release_0001_data(db)

    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()
    assert schema_diff(db) == []  # the upgraded schema is exactly what a fresh install builds

    # the built-in tailnet reads the old devices and attributes as they were
    tailnet = BuiltinTailnet(db)
    devices = {d.id: d for d in tailnet.list_devices()}
    assert set(devices) == {LAPTOP, SERVER}
    laptop, server = devices[LAPTOP], devices[SERVER]
    assert (laptop.node_id, laptop.serial_numbers, laptop.addresses) == (
        "nRiTaLaPtoP1CNTRL",
        ("C02RITA",),
        ("100.64.0.10", "fd7a:115c:a1e0::a"),
    )
    assert laptop.last_seen == NOW - timedelta(minutes=3) and laptop.raw["machineKey"] == "mkey:abc123"
    assert (server.tags, server.posture_identity_disabled, server.last_seen) == (("tag:prod", "tag:db"), True, None)
    current = tailnet.get_attributes(LAPTOP)
    assert written(current) == {"custom:prodAccess": True, "custom:tier": 3, "huntress:firewallStatus": "Enabled"}
    assert current.expiries == {"custom:prodAccess": NOW + timedelta(hours=2)}
    assert written(tailnet.get_attributes(SERVER)) == {}  # expired under release 0001: never shown
    assert tailnet.attributes_with_keys({"huntress:firewallStatus"}) == {LAPTOP: {"huntress:firewallStatus": "Enabled"}}

    # the old key registry still rules: the type of a key is fixed while a device holds it
    with pytest.raises(RuleViolation):
        tailnet.set_attribute(LAPTOP, "custom:prodAccess", "yes", actor=Actor("cli:bob"))
    with pytest.raises(RuleViolation):
        tailnet.set_attribute(LAPTOP, "custom:PRODACCESS", True, actor=Actor("cli:bob"))
    tailnet.set_attribute(LAPTOP, "custom:tier", 4, actor=Actor("cli:bob"), comment="after the upgrade")
    assert tailnet.purge_expired() == 1  # the attribute that expired before the upgrade is purged and audited
    assert written(tailnet.get_attributes(LAPTOP))["custom:tier"] == 4

    # the old API key still authenticates; the audit log kept its history, appends, and stays append-only
    principal = AuthStore(db).authenticate(format_api_key(KEY_ID, KEY_SECRET))
    assert principal.actor.id == f"apikey:{KEY_ID}"
    with db.session() as session:
        events = audit.query(session)
    old = [e for e in events if e.details.get("release") == "0001"]
    assert [(e.action, e.actor) for e in old] == [
        ("Add device", "cli:alice"),
        ("Add device", "cli:alice"),
        ("Create API key", "cli:alice"),
        ("Update node attribute", "cli:alice"),
        ("Update node attribute", "system:sync:huntress"),
    ]
    assert (old[3].new_value, old[3].expiry, old[4].old_value) == (True, NOW + timedelta(hours=2), "Disabled")
    new = [(e.actor, e.target, e.old_value, e.new_value) for e in events if e.details.get("release") is None]
    assert ("system:expiry", f"device/{SERVER}/attributes/custom:prodAccess", True, None) in new
    assert ("cli:bob", f"device/{LAPTOP}/attributes/custom:tier", 3, 4) in new
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone else'"))

    # the tables added after release 0001 work with the old rows: a request on the old device times out and
    # is announced through the outbox; an integration is stored encrypted beside its sync state
    with db.session() as session:
        request = access_models.AccessRequestRow(
            status="pending",
            requester_id="UREQ",
            requester_email="rita@example.com",
            profile_id="prod",
            attribute="custom:prodAccess",
            value=True,
            approvals_required=1,
            device_id=LAPTOP,
            device_name=laptop.name,
            device_owner=laptop.user,
            device_os=laptop.os,
            duration_seconds=3600,
            reason="deploy",
            approver_ids=["UBOB"],
            created_at=NOW - timedelta(days=2),
            timeout_at=NOW - timedelta(days=1),
        )
        session.add(request)
    assert Lifecycle(db, tailnet, lambda: Config()).expire_pending() == 1
    claimed = Outbox(db).claim()
    assert [(n.request_id, n.kind) for n in claimed] == [(request.id, Notice.REQUEST_EXPIRED)]
    with db.session() as session:
        assert [e.action for e in audit.query(session, actor="system:access")] == [AccessAudit.REQUEST_EXPIRED]
    integrations = Integrations(db, Cipher.from_secret("a passphrase for the upgrade test"))
    integrations.add("huntress", {"api_key": "k", "api_secret": "s"}, actor="cli:alice")
    with db.session() as session:
        integration_id = session.scalar(select(vendor_models.IntegrationRow.id))
        assert integration_id is not None
        session.add(
            vendor_models.SyncStateRow(
                integration_id=integration_id, device_id=LAPTOP, key="custom:huntress_firewallStatus", value="Enabled"
            )
        )
    assert integrations.credentials("huntress") == {"api_key": "k", "api_secret": "s"}

    # down to base and up again: every table goes, and a fresh schema comes back that works
    command.downgrade(alembic_config(db.engine), "base")
    assert current_revision(db.engine) is None
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()
    assert schema_diff(db) == []
    assert BuiltinTailnet(db).list_devices() == []
    again = BuiltinTailnet(db).add_device(name="fresh", user="x@example.com", actor=Actor("cli:alice"))
    BuiltinTailnet(db).set_attribute(again.id, "custom:prodAccess", "now_a_string", actor=Actor("cli:alice"))
    assert written(BuiltinTailnet(db).get_attributes(again.id)) == {"custom:prodAccess": "now_a_string"}
