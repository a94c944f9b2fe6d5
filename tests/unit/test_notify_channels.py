"""A notify channel that refuses posts costs the requester nothing, and the admins hear about it once.

The real ``Notifier`` talks to the fake Slack Web API, which answers channel posts the way Slack does
(``not_in_channel`` when the bot was never invited). The clock is frozen: a DM that waited for a backoff
would never arrive here, so every "arrived" below arrived without waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from app.access.outbox import MAX_ATTEMPTS, Delivery, Notification, Outbox, open_channel_problems
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import ChannelProblemRow, NotificationRow
from app.slack.notify import Notifier
from app.slack.views.delivery import admin_alert, channel_problem_blocks
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI, Params
from tests.unit.access_support import ADMIN, BOB, EMAILS, REQ, submit

NOTIFY = "CNOTIFY"  # the prod profile's notify_channel (tests/unit/access_support.py)


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=DEFAULT_TOKEN) as api:
        for user_id, email in EMAILS.items():
            api.add_user(user_id, email, email.split("@")[0])
        yield api


def notifier(fake: FakeSlackAPI, db: Database, clock: FrozenClock, service: AccessService) -> Notifier:
    """A notifier as a process builds it (a new one is a restart: it shares nothing but the database)."""
    return Notifier(WebClient(token=DEFAULT_TOKEN, base_url=fake.base_url), Outbox(db, clock=clock), service)


def dm_texts(fake: FakeSlackAPI, user_id: str) -> list[str]:
    """Texts successfully posted to ``user_id``'s DM, in order."""
    return [
        str(c.params.get("text", ""))
        for c in fake.calls("chat.postMessage")
        if c.ok and c.response.get("channel") == f"D{user_id}"
    ]


def granted(service: AccessService, device: Device, **kw: Any) -> int:
    request = submit(service, device, **kw)
    service.approve(request.id, BOB)
    return int(request.id)


def channel_posts(db: Database) -> list[tuple[bool, str | None]]:
    """(sent, last error) of every channel announcement."""
    with db.session() as session:
        rows = session.scalars(
            select(NotificationRow).where(NotificationRow.kind == Delivery.CHANNEL_POST).order_by(NotificationRow.id)
        )
        return [(r.sent_at is not None, r.last_error) for r in rows]


def test_bot_not_in_the_channel_costs_the_requester_nothing_and_admins_hear_once(
    fake: FakeSlackAPI, service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    fake.add_channel(NOTIFY, "access-requests", bot_member=False)
    first = notifier(fake, db, clock, service)

    request_id = granted(service, device)
    first.deliver(request_id)
    assert len(dm_texts(fake, ADMIN)) == 1  # told in the same run
    service.revoke(request_id, BOB)
    first.deliver(request_id)

    texts = dm_texts(fake, REQ)
    assert [t.split(" ", 1)[0] for t in texts[1:]] == [":white_check_mark:", ":lock:"]  # granted, then revoked
    assert "granted" in texts[1] and "revoked" in texts[2]
    requester_message = fake.messages(f"D{REQ}")[0]
    assert "(revoked)" in requester_message["text"]  # the request message itself is up to date too
    assert fake.messages(NOTIFY) == []
    assert Outbox(db, clock=clock).pending_count() == 0  # nothing left to retry for hours
    with db.session() as session:
        given_up = session.scalars(select(NotificationRow).where(NotificationRow.kind == Delivery.CHANNEL_POST)).one()
        assert (given_up.sent_at, given_up.attempts, given_up.last_error) == (
            None,
            MAX_ATTEMPTS,
            "gave up: not_in_channel",
        )

    [alert] = dm_texts(fake, ADMIN)
    assert "not_in_channel" in alert and "/invite @accessbot" in alert and "chat:write.public" in alert
    [problem] = open_channel_problems(db)
    assert (problem.channel, problem.error, problem.profile_id, problem.occurrences) == (
        NOTIFY,
        "not_in_channel",
        "prod",
        1,
    )

    # a second grant to the same channel, delivered after a restart: counted, not alerted again
    laptop = BuiltinTailnet(db).add_device(name="req-desktop", user="req@example.com", actor=Actor("cli:t"))
    second = granted(service, laptop)
    notifier(fake, db, clock, service).deliver(second)
    assert dm_texts(fake, REQ)[-1].startswith(":white_check_mark:")
    assert len(dm_texts(fake, ADMIN)) == 1
    assert [p.occurrences for p in open_channel_problems(db)] == [2]

    # the bot is invited: the next announcement works and the problem is resolved ...
    fake.invite_bot(NOTIFY)
    service.revoke(second, BOB)
    third = granted(service, device)
    notifier(fake, db, clock, service).deliver()
    assert len(fake.messages(NOTIFY)) == 1
    assert open_channel_problems(db) == []
    with db.session() as session:
        row = session.scalars(select(ChannelProblemRow)).one()
        assert row.resolved_at == clock()

    # ... so when it breaks again, the admins are told again
    fake.remove_bot(NOTIFY)
    service.revoke(third, BOB)
    notifier(fake, db, clock, service).deliver(granted(service, device))
    assert len(dm_texts(fake, ADMIN)) == 2
    assert [(p.error, p.occurrences) for p in open_channel_problems(db)] == [("not_in_channel", 1)]


class ChannelLimited(FakeSlackAPI):
    """Answers the next ``limited`` posts to the notify channel with ``error`` (only those: DMs go through)."""

    def __init__(self) -> None:
        super().__init__(token=DEFAULT_TOKEN)
        self.limited = 0
        self.error, self.status = "ratelimited", 429

    def _dispatch(
        self, method: str, params: Params, authorization: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if method == "chat.postMessage" and params.get("channel") == NOTIFY and self.limited > 0:
            self.limited -= 1
            self.fail_next(method, error=self.error, status=self.status, retry_after=30 if self.status == 429 else None)
        return super()._dispatch(method, params, authorization)


@pytest.mark.parametrize(("error", "status"), [("ratelimited", 429), ("ratelimited", 200), ("internal_error", 500)])
def test_a_transient_channel_error_is_retried_and_holds_back_no_dm(
    error: str, status: int, service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    with ChannelLimited() as fake:
        for user_id, email in EMAILS.items():
            fake.add_user(user_id, email, email.split("@")[0])
        fake.add_channel(NOTIFY, "access-requests")
        fake.limited, fake.error, fake.status = 1, error, status
        request_id = granted(service, device)
        notifier(fake, db, clock, service).deliver(request_id)
        service.revoke(request_id, BOB)
        notifier(fake, db, clock, service).deliver(request_id)

        assert [t.split(" ", 1)[0] for t in dm_texts(fake, REQ)[1:]] == [":white_check_mark:", ":lock:"]
        assert fake.messages(NOTIFY) == [] and channel_posts(db) == [(False, error)]  # waiting for its retry
        assert open_channel_problems(db) == [] and dm_texts(fake, ADMIN) == []

        clock.advance(seconds=31)  # past Retry-After, and past the first backoff (15 s) of the others
        assert notifier(fake, db, clock, service).deliver() == 1
        [announcement] = fake.messages(NOTIFY)
        assert "was granted" in announcement["text"]
        assert channel_posts(db) == [(True, None)]
        assert open_channel_problems(db) == [] and dm_texts(fake, ADMIN) == []


def test_admins_by_email_are_looked_up_and_an_admin_slack_cannot_dm_is_skipped(
    fake: FakeSlackAPI, service: AccessService, device: Device, db: Database, clock: FrozenClock, config: list[Config]
) -> None:
    config[0] = config[0].model_copy(update={"admins": ("dave@example.com", "UGONE", "nobody@example.com", ADMIN)})
    request_id = granted(service, device)  # the channel was never created: channel_not_found
    notifier(fake, db, clock, service).deliver(request_id)
    assert len(dm_texts(fake, "UDAVE")) == 1 and len(dm_texts(fake, ADMIN)) == 1
    [alert] = dm_texts(fake, ADMIN)
    assert "channel_not_found" in alert and "notify_channel" in alert
    assert Outbox(db, clock=clock).pending_count() == 0  # the alert is done: UGONE and nobody@ were skipped


def test_one_alert_per_channel_and_error_whichever_process_gives_up_first(
    service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    """Each process gives up its own post to the same channel: only the one that sets ``alerted_at`` alerts."""
    request_id = granted(service, device)
    items = []
    for attempt in (1, 2, 3):
        with db.session() as session:
            row = NotificationRow(
                request_id=request_id, kind=Delivery.CHANNEL_POST, created_at=clock(), payload={"channel": NOTIFY}
            )
            session.add(row)
            session.flush()
            items.append(Notification(row.id, request_id, row.kind, dict(row.payload), attempt))
    outcomes = [
        Outbox(db, clock=clock).channel_refused(item, channel=NOTIFY, error="not_in_channel", profile_id="prod")
        for item in items
    ]
    assert outcomes == [True, False, False]
    assert Outbox(db, clock=clock).channel_refused(items[0], channel=NOTIFY, error="is_archived", profile_id="prod")
    with db.session() as session:
        alerts = session.scalars(select(NotificationRow.payload).where(NotificationRow.kind == Delivery.CHANNEL_ALERT))
        assert sorted(p["error"] for p in alerts) == ["is_archived", "not_in_channel"]


def test_channel_problems_show_for_channels_still_configured(
    fake: FakeSlackAPI, service: AccessService, db: Database, clock: FrozenClock, config: list[Config], device: Device
) -> None:
    outbox = Outbox(db, clock=clock)
    request_id = granted(service, device)
    item = Notification(0, request_id, Delivery.CHANNEL_POST, {}, 1)
    outbox.channel_refused(item, channel=NOTIFY, error="not_in_channel", profile_id="prod")
    outbox.channel_refused(item, channel="COLD", error="is_archived", profile_id="prod")
    blocks = channel_problem_blocks(open_channel_problems(db), config[0])
    text = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert "<#CNOTIFY>" in text and "`not_in_channel`" in text and "/invite @accessbot" in text
    assert "COLD" not in text  # no profile posts there any more: nothing to fix
    assert blocks[0]["type"] == "header" and len(blocks) == 2
    client = WebClient(token=DEFAULT_TOKEN, base_url=fake.base_url)
    assert client.chat_postMessage(channel=ADMIN, text="status", blocks=blocks)["ok"]  # Block Kit checked
    for error in ("not_in_channel", "channel_not_found", "is_archived", "restricted_action", "missing_scope"):
        text, alert = admin_alert("#access", error, "x" * 3000)
        assert error in text and "What to do" in text
        assert client.chat_postMessage(channel=ADMIN, text=text, blocks=alert)["ok"]
    assert channel_problem_blocks([], config[0]) == []


def test_channel_notifications_neither_wait_for_nor_hold_back_the_request_s_dms(
    service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    request = submit(service, device)  # "requested" stays undelivered below
    with db.session() as session:
        for kind in (Delivery.CHANNEL_POST, Delivery.CHANNEL_ALERT, "revoked"):
            session.add(NotificationRow(request_id=request.id, kind=kind, created_at=clock(), payload={}))
    outbox = Outbox(db, clock=clock)
    claimed = {item.kind: item for item in outbox.claim(request_id=request.id)}
    assert not outbox.earlier_unsent(claimed[Delivery.CHANNEL_POST])  # does not wait for "requested"
    assert not outbox.earlier_unsent(claimed[Delivery.CHANNEL_ALERT])
    outbox.done(claimed["requested"])
    assert not outbox.earlier_unsent(claimed["revoked"])  # the unsent channel post and alert hold nothing back


def test_processes_giving_up_at_the_same_moment_alert_once(
    service: AccessService, device: Device, db: Database, clock: FrozenClock
) -> None:
    """Racing writers of a new problem row: one creates it (the others retry after the unique constraint said
    no, on PostgreSQL; SQLite serialises them), exactly one alerts."""
    request_id = granted(service, device)
    items = [Notification(0, request_id, Delivery.CHANNEL_POST, {}, 1) for _ in range(6)]
    start = threading.Barrier(len(items))

    def give_up(item: Notification) -> bool:
        outbox = Outbox(Database(db.engine), clock=clock)
        start.wait(10)
        return outbox.channel_refused(item, channel=NOTIFY, error="not_in_channel", profile_id="prod")

    with ThreadPoolExecutor(len(items)) as pool:
        outcomes = list(pool.map(give_up, items))
    assert sorted(outcomes) == [False] * 5 + [True]
    assert [p.occurrences for p in open_channel_problems(db)] == [6]
    with db.session() as session:
        alerts = session.scalars(select(NotificationRow.id).where(NotificationRow.kind == Delivery.CHANNEL_ALERT))
        assert len(alerts.all()) == 1
