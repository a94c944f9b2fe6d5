"""Bulk INSERT of many rows in the caller's transaction: a prepared executemany, or COPY on PostgreSQL.

A first EDR sync inserts hundreds of thousands of attribute values and as many audit rows. psycopg's executemany
still sends one statement per row; ``COPY ... FROM STDIN`` streams them (several times faster), with the same
values as the executemany would store: JSON columns get the JSON text SQLAlchemy would write (``None`` is JSON
``null``), times go in as aware UTC datetimes. On SQLite the statement is compiled once and each column's
SQLAlchemy bind conversion is applied once per distinct scalar value (a batch shares its time, actor, comment
and a handful of values), then handed to the driver's executemany.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from app.db.types import UTCDateTime

COPY_MIN_ROWS = 500
"""Below this many rows the plain executemany is as quick as a COPY or the prepared one."""


class JSONText(str):
    """A JSON column's value already encoded exactly as ``json.dumps`` would encode it, stored as it is.

    The audit rows of a sync batch carry a details object per row, unique but built from a few repeated parts:
    their writer joins pre-encoded parts instead of encoding a fresh dict per row (issue 14: a quarter of a first
    sync's write time). Only ``insert_rows`` understands it.
    """

    __slots__ = ()


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, in order) into ``table`` in the session's transaction."""
    if not rows:
        return
    connection = session.connection()
    if len(rows) < COPY_MIN_ROWS:
        session.execute(insert(table), [_decoded(row) for row in rows])
        return
    if connection.dialect.name != "postgresql":
        _executemany(connection, table, rows)
        return
    names = list(rows[0])
    # column by column, each distinct scalar converted once (a batch repeats its time, actor and values)
    values = [
        _column(rows, name, _copy_value(table.c[name].type), isinstance(table.c[name].type, JSON)) for name in names
    ]
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    driver = connection.connection.driver_connection  # the psycopg connection of this very transaction
    with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
        for row in zip(*values, strict=True):
            copy.write_row(row)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with any ``JSONText`` decoded, for SQLAlchemy's own bind processing (which would encode it again)."""
    if not any(value.__class__ is JSONText for value in row.values()):
        return row
    return {name: json.loads(value) if value.__class__ is JSONText else value for name, value in row.items()}


def _executemany(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """The INSERT compiled once, each column's bind conversion done once per distinct scalar value.

    Column by column (``map`` over an ``itemgetter``): a column without a conversion is copied at C speed, and a
    sync batch's repeated times, actors and values cost one dictionary look-up each.
    """
    dialect = connection.dialect
    names = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=names)
    convert = {name: _bind_processor(table.c[name].type, dialect) for name in names}
    if dialect.name == "sqlite":
        convert = {name: _with_sqlite_adapter(process) for name, process in convert.items()}
    order = compiled.positiontup
    columns = [
        _column(rows, name, convert[name], isinstance(table.c[name].type, JSON))
        for name in (names if order is None else order)
    ]
    if order is None:  # a named paramstyle
        params: list[Any] = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    else:
        params = list(zip(*columns, strict=True))
    connection.exec_driver_sql(compiled.string, params)


def _column(
    rows: list[dict[str, Any]], name: str, process: Callable[[Any], Any] | None, is_json: bool = False
) -> list[Any]:
    """One column's bound values: as they are, or converted once per distinct scalar (dicts and lists each time);
    a JSON column's ``JSONText`` is bound as it is (what the JSON bind processing would have produced)."""
    values = list(map(itemgetter(name), rows))
    if process is None:
        return values
    seen: dict[tuple[type, Any], Any] = {}
    out: list[Any] = []
    append = out.append
    for value in values:
        if is_json and value.__class__ is JSONText:
            append(str(value))
            continue
        try:
            key = (value.__class__, value)
            append(seen[key])
        except KeyError:
            seen[key] = converted = process(value)
            append(converted)
        except TypeError:  # unhashable (a JSON dict or list): converted each time
            append(process(value))
    return out


def _with_sqlite_adapter(process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """``process`` followed by the adaptation sqlite3 would make of its result at execution (a datetime becomes
    ``isoformat(" ")`` text), so that too is done once per distinct value rather than once per row."""
    if process is None:
        return None

    def adapted(value: Any) -> Any:
        bound = process(value)
        adapt = sqlite3.adapters.get((bound.__class__, sqlite3.PrepareProtocol))
        return bound if adapt is None else adapt(bound)

    return adapted


def _bind_processor(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """SQLAlchemy's own conversion of a bound value of this type (a TypeDecorator's includes its impl's)."""
    if isinstance(column_type, TypeDecorator):
        return column_type.bind_processor(dialect)
    return column_type.dialect_impl(dialect).bind_processor(dialect)


def _copy_value(column_type: Any) -> Callable[[Any], Any] | None:
    """How a value of this column type goes into COPY: as SQLAlchemy's bind processing would store it."""
    if isinstance(column_type, JSON):
        return _json_text
    if isinstance(column_type, UTCDateTime):
        return _utc
    return None


def _json_text(value: Any) -> str:
    return str(value) if value.__class__ is JSONText else json.dumps(value)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)
