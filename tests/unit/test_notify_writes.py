"""A notification costs the database two write transactions, whatever it posts, and a retry posts only what is missing.

Under load SQLite's single writer is what deliveries wait for: a submission to ten approvers used to make one
write transaction per message posted. Now the claim is one transaction (for every notification claimed at once)
and the messages a delivery posted are remembered with its completion — or, when it fails half-way, with its
failure, so the retry still posts only what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import event, select

from app.access.outbox import Outbox
from app.access.service import AccessService
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import PostedMessageRow
from app.slack.notify import Notifier
from app.tailnet.models import Device
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.unit.access_support import BOB, CAROL, EMAILS, REQ, submit


class WriteTransactions:
    """Counts committed transactions that wrote (INSERT, UPDATE or DELETE)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._writing: set[int] = set()
        engine = db.engine
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self._writing.add(id(conn))

    def _commit(self, conn: Any) -> None:
        if id(conn) in self._writing:
            self._writing.discard(id(conn))
            self.count += 1

    def _rollback(self, conn: Any) -> None:
        self._writing.discard(id(conn))


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=DEFAULT_TOKEN) as api:
        for user_id, email in EMAILS.items():
            if user_id != REQ:  # the requester joins later (their DM fails until then)
                api.add_user(user_id, email, email.split("@")[0])
        yield api


def notifier(fake: FakeSlackAPI, db: Database, clock: FrozenClock, service: AccessService) -> Notifier:
    return Notifier(WebClient(token=DEFAULT_TOKEN, base_url=fake.base_url), Outbox(db, clock=clock), service)


def posted(db: Database, request_id: int) -> list[str]:
    with db.session() as session:
        return sorted(
            session.scalars(select(PostedMessageRow.audience).where(PostedMessageRow.request_id == request_id))
        )


def dms(fake: FakeSlackAPI, user_id: str) -> int:
    return sum(1 for c in fake.calls("chat.postMessage") if c.ok and c.response.get("channel") == f"D{user_id}")


def test_a_submission_is_delivered_in_two_write_transactions(
    fake: FakeSlackAPI, service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    fake.add_user(REQ, EMAILS[REQ], "req")
    request = submit(service, device, approver_ids=[BOB, CAROL])
    writes = WriteTransactions(db)

    assert notifier(fake, db, clock, service).deliver(request.id) == 1

    assert (dms(fake, BOB), dms(fake, CAROL), dms(fake, REQ)) == (1, 1, 1)
    assert posted(db, request.id) == ["approver:UBOB", "approver:UCAROL", "requester"]
    assert writes.count == 2  # the claim; the three messages and the completion


def test_a_grant_and_its_channel_announcement_are_delivered_in_three_write_transactions(
    fake: FakeSlackAPI, service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    fake.add_user(REQ, EMAILS[REQ], "req")
    fake.add_channel("CNOTIFY", "access-requests")  # the prod profile's notify channel
    request = submit(service, device, approver_ids=[BOB])
    delivering = notifier(fake, db, clock, service)
    assert delivering.deliver(request.id) == 1
    service.approve(request.id, BOB)
    writes = WriteTransactions(db)

    assert delivering.deliver(request.id) == 2  # "granted", then the announcement it queued

    assert sum(1 for c in fake.calls("chat.postMessage") if c.ok and c.response.get("channel") == "CNOTIFY") == 1
    assert writes.count == 3  # the claim; the notice and the completion (claiming the announcement); its own


def test_a_delivery_that_fails_half_way_remembers_what_it_posted_and_the_retry_posts_the_rest(
    fake: FakeSlackAPI, service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    request = submit(service, device, approver_ids=[BOB, CAROL])

    assert notifier(fake, db, clock, service).deliver(request.id) == 0  # the requester's DM: user_not_found
    assert posted(db, request.id) == ["approver:UBOB", "approver:UCAROL"]  # remembered with the failure

    fake.add_user(REQ, EMAILS[REQ], "req")
    clock.advance(seconds=16)  # the backoff is over
    assert notifier(fake, db, clock, service).deliver(request.id) == 1

    assert (dms(fake, BOB), dms(fake, CAROL), dms(fake, REQ)) == (1, 1, 1)  # nobody DMed twice
    assert posted(db, request.id) == ["approver:UBOB", "approver:UCAROL", "requester"]


def test_a_dm_channel_is_opened_once_per_person_not_once_per_message(
    fake: FakeSlackAPI, service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    fake.add_user(REQ, EMAILS[REQ], "req")
    delivering = notifier(fake, db, clock, service)
    for _ in range(2):
        request = submit(service, device, approver_ids=[BOB, CAROL])
        assert delivering.deliver(request.id) == 1
        service.deny(request.id, BOB, "not now")
        assert delivering.deliver(request.id) == 1

    assert (dms(fake, BOB), dms(fake, CAROL)) == (2, 2)
    assert sorted(str(c.params["users"]) for c in fake.calls("conversations.open")) == [BOB, CAROL, REQ]
