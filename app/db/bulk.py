"""Bulk INSERT of many rows in the caller's transaction: executemany, or COPY on PostgreSQL.

A first EDR sync inserts hundreds of thousands of attribute values and as many audit rows. psycopg's executemany
still sends one statement per row; ``COPY ... FROM STDIN`` streams them (several times faster), with the same
values as the executemany would store: JSON columns get the JSON text SQLAlchemy would write (``None`` is JSON
``null``), times go in as aware UTC datetimes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy.orm import Session

from app.db.types import UTCDateTime

COPY_MIN_ROWS = 500
"""Below this many rows an executemany is as quick as a COPY."""


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, in order) into ``table`` in the session's transaction."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS:
        session.execute(insert(table), rows)
        return
    names = list(rows[0])
    convert = [_copy_value(table.c[name].type) for name in names]
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    driver = connection.connection.driver_connection  # the psycopg connection of this very transaction
    with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row([conv(row[name]) for name, conv in zip(names, convert, strict=True)])


def _copy_value(column_type: Any) -> Callable[[Any], Any]:
    """How a value of this column type goes into COPY: as SQLAlchemy's bind processing would store it."""
    if isinstance(column_type, JSON):
        return json.dumps
    if isinstance(column_type, UTCDateTime):
        return _utc
    return _same


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def _same(value: Any) -> Any:
    return value
