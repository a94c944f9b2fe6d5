"""Query plans of the EDR sync's per-batch queries, at a size where a wrong plan costs minutes.

The table is filled the way a first sync fills it (``set_many`` batches of 1000 devices), then one more batch
runs with every SELECT it sends captured; each is EXPLAINed (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL
``EXPLAIN``) with its own parameters. A query that reads the attribute or device table in full instead of
through an index fails here: at 50k devices such a scan made each batch of a sync slower than the last (SQLite
walked the ``key_id`` index for "any expired values?"; PostgreSQL scanned the fresh, never analysed table).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, insert

from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables import DeviceRow
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, AttributeChanges, AttributeWrite
from tests.conftest import START

DEVICES = 6000
BATCH = 1000  # the built-in store's max_batch_devices: what a sync sends per set_many
KEYS = ("huntress:defenderStatus", "huntress:firewallStatus", "huntress:agentVersion", "huntress:isolated")
SYNC = Actor.system("sync:huntress", "huntress")
TABLES = ("device_attributes", "devices")


def _device_ids() -> list[str]:
    return [str(10**15 + n) for n in range(DEVICES)]


def _seed_devices(db: Database) -> None:
    rows = [
        {
            "id": device_id,
            "node_id": f"nPLAN{n:07d}CNTRL",
            "name": f"host-{n:05d}.example.ts.net",
            "hostname": f"host-{n:05d}",
            "user": f"user{n % 97}@example.com",
            "os": "windows",
            "client_version": "1.76.1",
            "tags": [],
            "addresses": [],
            "serial_numbers": [f"SN{n:07d}"],
            "posture_identity_disabled": False,
            "created": START,
            "extra": {},
        }
        for n, device_id in enumerate(_device_ids())
    ]
    with db.session() as session:
        session.execute(insert(DeviceRow.__table__), rows)


def _first_sync(tailnet: BuiltinTailnet) -> None:
    ids = _device_ids()
    for start in range(0, len(ids), BATCH):
        changes: AttributeChanges = {
            device_id: {
                KEYS[0]: AttributeWrite("Protected"),
                KEYS[1]: AttributeWrite("Enabled"),
                KEYS[2]: AttributeWrite("0.14.2"),
                KEYS[3]: AttributeWrite(False),
            }
            for device_id in ids[start : start + BATCH]
        }
        tailnet.set_many(changes, actor=SYNC, comment="accessbot Huntress sync")


@contextmanager
def _captured_selects(db: Database) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)


def _plan(db: Database, statement: str, parameters: Any) -> list[str]:
    prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    return [str(row[-1]) for row in rows]  # SQLite: (id, parent, notused, detail); PostgreSQL: (QUERY PLAN,)


def _scans(db: Database, plan: Sequence[str]) -> list[str]:
    """Lines of a plan that read a whole sync table (a full scan, or a walk of an entire index)."""
    if db.dialect == "sqlite":
        return [line for line in plan if any(line.startswith(f"SCAN {table}") for table in TABLES)]
    stops_at_once = re.match(r"Limit  \(cost=[\d.]+\.\.([\d.]+) ", plan[0])
    if stops_at_once and float(stops_at_once.group(1)) < 1:
        return []  # "does any row hold this key?": the planner expects the first rows read to answer it
    return [line for line in plan if any(f"Seq Scan on {table} " in line + " " for table in TABLES)]


def test_every_query_of_a_sync_batch_uses_an_index(db: Database, clock: FrozenClock) -> None:
    tailnet = BuiltinTailnet(db, clock=clock)
    _seed_devices(db)
    _first_sync(tailnet)
    clock.advance(minutes=15)
    ids = _device_ids()[2500:2600]
    # a re-sync batch: changed values, a removed attribute, a new key; one device also holds an expiring value
    tailnet.set_attribute(ids[0], "huntress:grant", "yes", actor=SYNC, expiry=START + timedelta(days=1))
    changes: AttributeChanges = {
        device_id: {
            KEYS[0]: AttributeWrite("Unhealthy"),
            KEYS[3]: None,
            "huntress:tamperProtection": AttributeWrite(True),
        }
        for device_id in ids
    }
    with _captured_selects(db) as selects:
        tailnet.set_many(changes, actor=SYNC, comment="accessbot Huntress sync")

    on_tables = [(sql, params) for sql, params in selects if any(table in sql for table in TABLES)]
    assert len(on_tables) >= 3  # device look-up, expired values, stored values (PostgreSQL: + row locks)
    plans = {sql: _plan(db, sql, params) for sql, params in on_tables}
    for sql, plan in plans.items():
        assert _scans(db, plan) == [], f"{sql[:300]}\n{[line[:200] for line in plan]}"

    expired = [plan for sql, plan in plans.items() if "expires_at <=" in sql]
    assert expired and all("ix_device_attributes_expires_at" in " ".join(plan) for plan in expired), expired
    stored = [plan for sql, plan in plans.items() if "device_attributes.value" in sql and "device_id IN" in sql]
    unique = "sqlite_autoindex_device_attributes_1" if db.dialect == "sqlite" else "uq_device_attributes_device_key"
    assert stored and all(unique in " ".join(plan) for plan in stored), stored
