"""Drift findings: devices holding a profile's attribute with no active grant behind it (``drift_findings`` rows).

One row per (device, attribute). A finding is open until it is resolved (``removed``, ``granted``, ``gone``); a
recurrence reopens the row and it is reported again. "Report to the admins once" holds across processes: a
conditional UPDATE of ``reported_at`` (still NULL) claims the finding, and a report that failed releases it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.timefmt import format_rfc3339
from app.db import Database
from app.db.tables.access import DriftFindingRow
from app.tailnet.models import AttributeValue

DeviceKey = tuple[str, str]
"""(device id, attribute key)."""


class Resolution(StrEnum):
    """Why a finding was closed."""

    REMOVED = "removed"  # reconcile deleted the attribute
    GRANTED = "granted"  # an active grant now explains it
    GONE = "gone"  # the attribute (or the device, or the profile) is gone


@dataclass(frozen=True, slots=True)
class Held:
    """A profile attribute a device holds with no active grant, as one reconcile run saw it."""

    device_id: str
    device_name: str
    attribute: str
    value: AttributeValue
    profile_id: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One drift finding as stored."""

    id: int
    device_id: str
    device_name: str
    attribute: str
    value: Any
    profile_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    reported_at: datetime | None
    resolved_at: datetime | None
    resolution: str | None

    @classmethod
    def from_row(cls, row: Any) -> Finding:
        return cls(
            row.id,
            row.device_id,
            row.device_name,
            row.attribute,
            row.value,
            row.profile_id,
            row.first_seen_at,
            row.last_seen_at,
            row.reported_at,
            row.resolved_at,
            row.resolution,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in RFC 3339)."""

        def moment(at: datetime | None) -> str | None:
            return format_rfc3339(at) if at is not None else None

        return {
            "device_id": self.device_id,
            "device": self.device_name,
            "attribute": self.attribute,
            "value": self.value,
            "profile": self.profile_id,
            "first_seen": moment(self.first_seen_at),
            "last_seen": moment(self.last_seen_at),
            "reported": moment(self.reported_at),
            "resolved": moment(self.resolved_at),
            "resolution": self.resolution,
        }


SEEN_CHUNK = 500
"""Findings recorded per transaction."""


def record_seen(db: Database, held: Iterable[Held], now: datetime) -> list[int]:
    """Record what a run saw held without a grant; returns the ids of findings that are new or reopened.

    A finding seen again only has ``last_seen_at`` (and its value) refreshed; a resolved one is reopened, to be
    reported again. Another run creating the same row at once makes a chunk's insert fail: that chunk is then
    recorded one finding per transaction, where the loser of a race updates the winner's row.
    """
    items = list(held)
    opened: list[int] = []
    for start in range(0, len(items), SEEN_CHUNK):
        chunk = items[start : start + SEEN_CHUNK]
        try:
            with db.session() as session:
                found = [_seen(session, item, now) for item in chunk]
        except IntegrityError:
            found = [_seen_alone(db, item, now) for item in chunk]
        opened.extend(i for i in found if i is not None)
    return opened


def _seen_alone(db: Database, item: Held, now: datetime) -> int | None:
    """``_seen`` in a transaction of its own, once more after losing the race to create the row."""
    for attempt in (1, 2):
        try:
            with db.session() as session:
                return _seen(session, item, now)
        except IntegrityError:
            if attempt == 2:
                raise
    return None  # pragma: no cover - the loop returns or raises


def _seen(session: Session, item: Held, now: datetime) -> int | None:
    """Update or create the finding of ``item`` in the caller's transaction; its id when new or reopened."""
    same = (DriftFindingRow.device_id == item.device_id, DriftFindingRow.attribute == item.attribute)
    reopened = session.execute(
        update(DriftFindingRow)
        .where(*same, DriftFindingRow.resolved_at.is_not(None))
        .values(resolved_at=None, resolution=None, reported_at=None, first_seen_at=now)
        .returning(DriftFindingRow.id)
    ).scalar_one_or_none()
    seen = session.execute(
        update(DriftFindingRow)
        .where(*same)
        .values(last_seen_at=now, value=item.value, device_name=item.device_name, profile_id=item.profile_id)
    )
    if seen.rowcount:  # type: ignore[attr-defined]
        return reopened
    row = DriftFindingRow(
        device_id=item.device_id,
        device_name=item.device_name,
        attribute=item.attribute,
        value=item.value,
        profile_id=item.profile_id,
        first_seen_at=now,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def open_findings(db: Database, *, device_ids: Iterable[str] | None = None) -> list[Finding]:
    """Open findings (of ``device_ids`` when given), oldest first."""
    stmt = select(DriftFindingRow).where(DriftFindingRow.resolved_at.is_(None))
    if device_ids is not None:
        stmt = stmt.where(DriftFindingRow.device_id.in_(list(device_ids)))
    with db.session() as session:
        rows = session.scalars(stmt.order_by(DriftFindingRow.first_seen_at, DriftFindingRow.id))
        return [Finding.from_row(row) for row in rows]


def open_count(db: Database) -> int:
    """How many findings are open (for status pages)."""
    with db.session() as session:
        return session.scalar(select(func.count()).where(DriftFindingRow.resolved_at.is_(None))) or 0


def resolve(db: Database, finding_ids: Mapping[int, Resolution], now: datetime) -> int:
    """Close open findings with their resolution; returns how many this call closed."""
    with db.session() as session:
        return sum(resolve_in(session, finding_id, resolution, now) for finding_id, resolution in finding_ids.items())


def resolve_in(session: Session, finding_id: int, resolution: Resolution, now: datetime) -> bool:
    """Close one open finding in the caller's transaction (with its audit event); whether this call closed it."""
    result = session.execute(
        update(DriftFindingRow)
        .where(DriftFindingRow.id == finding_id, DriftFindingRow.resolved_at.is_(None))
        .values(resolved_at=now, resolution=str(resolution))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _reportable() -> ColumnElement[bool]:
    """Not reported yet, and open or removed by reconcile (the admins hear of a removal; not of one that went away
    or got a grant before anyone was told)."""
    return and_(
        DriftFindingRow.reported_at.is_(None),
        or_(DriftFindingRow.resolved_at.is_(None), DriftFindingRow.resolution == str(Resolution.REMOVED)),
    )


def claim_unreported(db: Database, now: datetime) -> list[Finding]:
    """Claim the findings nobody has reported yet (one claimer wins each, across processes): open ones, and those
    reconcile removed before they were reported."""
    with db.session() as session:
        candidates = list(session.scalars(select(DriftFindingRow.id).where(_reportable())))
    if not candidates:
        return []
    with db.session() as session:
        rows = session.execute(
            update(DriftFindingRow)
            .where(DriftFindingRow.id.in_(candidates), _reportable())
            .values(reported_at=now)
            .returning(*DriftFindingRow.__table__.c)
            .execution_options(synchronize_session=False)
        ).all()
    return sorted((Finding.from_row(row) for row in rows), key=lambda f: (f.first_seen_at, f.id))


def release(db: Database, findings: Iterable[Finding]) -> None:
    """Give claimed findings back (their report failed): the next run reports them."""
    with db.session() as session:
        for finding in findings:
            session.execute(
                update(DriftFindingRow)
                .where(DriftFindingRow.id == finding.id, DriftFindingRow.reported_at == finding.reported_at)
                .values(reported_at=None)
            )
