"""The notifier keeps one request's notifications in order without stranding a follower.

Two dispatchers (approval threads, the scheduler, other replicas) may work on the same request at once. A
notification whose predecessor is still being delivered elsewhere is released at once; whichever dispatcher
sees the predecessor delivered goes on with it. The clock is frozen, so nothing here is rescued by a later
scheduled run: a follower left behind would stay undelivered and the tests would fail.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select

from app.access.outbox import Notification, Outbox
from app.access.service import AccessService
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import NotificationRow
from app.slack.notify import Notifier
from app.tailnet.models import Device
from tests.unit.access_support import submit


class RecordingNotifier(Notifier):
    """A notifier whose Slack side only records what it delivered; delivery of one kind can be held."""

    def __init__(self, outbox: Outbox, access: AccessService, log: list[str]) -> None:
        super().__init__(client=None, outbox=outbox, access=access)  # type: ignore[arg-type]
        self.log = log
        self.hold_kind: str | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def _deliver(self, item: Notification, *_: object) -> None:
        if item.kind == self.hold_kind:
            self.holding.set()
            assert self.release.wait(10)
        self.log.append(item.kind)


def queue(db: Database, request_id: int, kind: str, clock: FrozenClock) -> None:
    with db.session() as session:
        session.add(NotificationRow(request_id=request_id, kind=kind, created_at=clock(), payload={}))


def unsent(db: Database, request_id: int) -> list[tuple[str, int]]:
    with db.session() as session:
        rows = session.scalars(
            select(NotificationRow).where(NotificationRow.request_id == request_id, NotificationRow.sent_at.is_(None))
        )
        return [(row.kind, row.attempts) for row in rows]


def test_a_follower_released_while_its_predecessor_is_in_flight_is_delivered_by_that_dispatcher(
    service: AccessService,
    device: Device,
    db: Database,
    clock: FrozenClock,
) -> None:
    request = submit(service, device)  # queues "requested"
    log: list[str] = []
    first = RecordingNotifier(Outbox(db, clock=clock), service, log)
    first.hold_kind = "requested"
    worker = threading.Thread(target=first.deliver, args=(request.id,))
    worker.start()
    assert first.holding.wait(10)

    queue(db, request.id, "granted", clock)
    second = RecordingNotifier(Outbox(db, clock=clock), service, log)
    assert second.deliver(request.id) == 0  # must wait for "requested"
    assert unsent(db, request.id) == [("requested", 1), ("granted", 0)]  # released, no attempt used

    first.release.set()
    worker.join(10)
    assert log == ["requested", "granted"]
    assert unsent(db, request.id) == []


def test_a_releaser_that_finds_the_predecessor_delivered_meanwhile_delivers_the_follower(
    service: AccessService,
    device: Device,
    db: Database,
    clock: FrozenClock,
) -> None:
    """The other interleaving: the predecessor's dispatcher finished (and found the follower still claimed)
    between this dispatcher's order check and its release."""
    request = submit(service, device)
    queue(db, request.id, "granted", clock)
    other = Outbox(db, clock=clock)
    [requested] = other.claim(request_id=request.id, limit=1)

    class Interleaved(Outbox):
        def defer(self, notification: Notification) -> None:
            other.done(requested)  # the other dispatcher finishes now ...
            assert other.claim(request_id=request.id) == []  # ... and its next round sees the follower claimed
            super().defer(notification)

    log: list[str] = []
    notifier = RecordingNotifier(Interleaved(db, clock=clock), service, log)
    assert notifier.deliver(request.id) == 1
    assert log == ["granted"]
    assert unsent(db, request.id) == []


def test_a_follower_of_a_failing_predecessor_waits_and_keeps_its_attempts(
    service: AccessService,
    device: Device,
    db: Database,
    clock: FrozenClock,
) -> None:
    request = submit(service, device)
    queue(db, request.id, "granted", clock)
    log: list[str] = []

    class SlackDown(RecordingNotifier):
        def _deliver(self, item: Notification, *_: object) -> Any:
            raise RuntimeError("slack down")

    assert SlackDown(Outbox(db, clock=clock), service, log).deliver(request.id) == 0
    assert unsent(db, request.id) == [("requested", 1), ("granted", 0)]
    clock.advance(seconds=16)  # the predecessor's backoff is over; Slack is back
    assert RecordingNotifier(Outbox(db, clock=clock), service, log).deliver(request.id) == 2
    assert log == ["requested", "granted"]
