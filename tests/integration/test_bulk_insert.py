"""``app.db.bulk.insert_rows`` (COPY on PostgreSQL, a prepared executemany on SQLite) stores exactly what a plain
SQLAlchemy executemany stores: the same JSON text, times, NULLs and strings, in the same order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Text, cast, insert, select

from app.db import Database, audit, bulk
from app.db.tables import AuditEventRow

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2**53 - 1,
    "Non Compliant",
    "tab\there",
    'quote"\\back',
    "ünï €",
    "",
    "null",
]


def _events() -> list[dict[str, Any]]:
    at = datetime(2026, 12, 2, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    one_round = [
        audit.event(
            at=at,
            actor="system:sync:huntress",
            action=audit.AuditAction.UPDATE_NODE_ATTRIBUTE,
            target=f"device/{n}/attributes/huntress:x",
            old=value,
            new=VALUES[-1 - n],
            expiry=at if n % 2 else None,
            comment=None if n % 3 else "line\nbreak",
            details={"value": value, "n": n},
        )
        for n, value in enumerate(VALUES)
    ]
    return one_round * (bulk.COPY_MIN_ROWS // len(VALUES) + 1)


def _stored(db: Database) -> list[tuple[Any, ...]]:
    row = AuditEventRow
    columns = [row.at, row.actor, row.action, row.target, row.expiry, row.comment]
    json_text = [cast(row.old_value, Text), cast(row.new_value, Text), cast(row.details, Text)]
    with db.session() as session:
        return [tuple(r) for r in session.execute(select(*columns, *json_text).order_by(row.id))]


def test_bulk_insert_stores_what_a_plain_executemany_stores(db: Database) -> None:
    events = _events()
    assert len(events) >= bulk.COPY_MIN_ROWS  # the COPY / prepared path, not the plain fallback
    with db.session() as session:
        session.execute(insert(AuditEventRow.__table__), events)
    with db.session() as session:
        bulk.insert_rows(session, AuditEventRow.__table__, events)
    stored = _stored(db)
    plain, fast = stored[: len(events)], stored[len(events) :]
    assert fast == plain
    assert plain[1][0] == datetime(2026, 12, 2, 9, 0, 0, 123456, tzinfo=UTC)
    assert plain[0][6:] == ("null", '"null"', '{"value": null, "n": 0}')


def _with_encoded_details(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "details": bulk.JSONText(json.dumps(event["details"]))} for event in events]


def test_pre_encoded_json_is_stored_as_the_plain_encoding_would_store_it(db: Database) -> None:
    events = _events()
    few = events[: bulk.COPY_MIN_ROWS - 1]  # the plain fallback: the text is decoded for SQLAlchemy's own encoding
    with db.session() as session:
        session.execute(insert(AuditEventRow.__table__), events + few)
    with db.session() as session:
        bulk.insert_rows(session, AuditEventRow.__table__, _with_encoded_details(events))
    with db.session() as session:
        bulk.insert_rows(session, AuditEventRow.__table__, _with_encoded_details(few))
    stored = _stored(db)
    plain, fast = stored[: len(events) + len(few)], stored[len(events) + len(few) :]
    assert fast == plain
    assert fast[0][8] == '{"value": null, "n": 0}'  # an object, not a JSON string holding the text
