"""Imported at start by every process ``bench/load.py`` runs (it puts this directory on ``PYTHONPATH``).

Always: the Slack endpoint's time per request is printed as ``BENCH-ACCESS <step> <status> <microseconds>``
(the format of the bench's gunicorn access log), so waitress reports server-side times too.

With ``ACCESSBOT_LOAD_NAIVE=1``, the naive baseline the bench compares against, i.e. delivery as it was before
issue 12: a submission's notifications delivered on the thread that acknowledged it (Bolt's listener pool),
outbox writes from every thread at once, one write transaction per claimed notification and per posted
message, a write to resolve channel problems after every channel post, and a ``conversations.open`` before
every DM. Everything else (the flows, the checks) is the same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

MARK = "BENCH-ACCESS"


def _timed(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        began, status = time.perf_counter(), ["-"]

        def record(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        body = app(environ, record)
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            micros = int((time.perf_counter() - began) * 1e6)
            step = environ.get("HTTP_X_BENCH_STEP", "-")
            sys.stdout.write(f"{MARK} {step} {status[0]} {micros}\n")
            sys.stdout.flush()

    return timed


def _time_waitress() -> None:
    from app.web import server

    original = server.HttpServer.__init__

    @functools.wraps(original)
    def init(self: server.HttpServer, app: Any, *args: Any, **kwargs: Any) -> None:
        original(self, _timed(app), *args, **kwargs)

    server.HttpServer.__init__ = init  # type: ignore[method-assign]


def _naive() -> None:
    from sqlalchemy import or_, select, update

    from app.access import outbox
    from app.access.outbox import MAX_ATTEMPTS, Notification, Outbox, PostedMessage
    from app.db.tables.access import NotificationRow
    from app.slack import notify
    from app.slack.listeners import views

    def claim(self: Outbox, *, request_id: int | None = None, limit: int = 50) -> list[Notification]:
        now = self.clock()
        claimed_until = now + self.lease()
        due = or_(NotificationRow.claimed_until.is_(None), NotificationRow.claimed_until <= now)
        with self.db.session() as session:
            stmt = (
                select(NotificationRow.id)
                .where(NotificationRow.sent_at.is_(None), NotificationRow.attempts < MAX_ATTEMPTS, due)
                .order_by(NotificationRow.id)
                .limit(limit)
            )
            if request_id is not None:
                stmt = stmt.where(NotificationRow.request_id == request_id)
            candidates = list(session.scalars(stmt))
        claimed = []
        for notification_id in candidates:  # one transaction per notification
            with self.db.session() as session:
                result = session.execute(
                    update(NotificationRow)
                    .where(NotificationRow.id == notification_id, NotificationRow.sent_at.is_(None), due)
                    .values(claimed_until=claimed_until, attempts=NotificationRow.attempts + 1)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                row = session.get(NotificationRow, notification_id, populate_existing=True)
                assert row is not None
                claimed.append(Notification(row.id, row.request_id, row.kind, dict(row.payload or {}), row.attempts))
        return claimed

    class WriteThrough(list[PostedMessage]):
        """Posted messages remembered one transaction each, as soon as they are posted."""

        def __init__(self, outbox: Outbox, request_id: int) -> None:
            super().__init__()
            self.outbox, self.request_id = outbox, request_id

        def append(self, message: PostedMessage) -> None:
            self.outbox.remember(self.request_id, message.audience, message.channel, message.ts)

    deliver = notify.Notifier._deliver

    def deliver_naively(self: notify.Notifier, item: Notification, made: Any) -> None:
        made.posted = WriteThrough(self.outbox, item.request_id)
        deliver(self, item, made)
        if made.channel_works is None and item.kind == notify.Delivery.CHANNEL_POST:
            self.outbox.channel_works(str(item.payload["channel"]))  # a write after every channel post
        elif made.channel_works is not None:
            self.outbox.channel_works(made.channel_works)
            made.channel_works = None

    class ListenerPool:
        """``ctx.pools`` whose ``later`` runs at once, on the listener's own thread (after its ``ack()``)."""

        def __init__(self, pools: Any) -> None:
            self._pools = pools

        def __getattr__(self, name: str) -> Any:
            return getattr(self._pools, name)

        def later(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
            fn(*args, **kwargs)

    submit = views.submit_request

    def submit_on_listener_pool(ctx: Any, ack: Any, body: Any, view: Any, client: Any) -> None:  # Bolt reads the names
        submit(dataclasses.replace(ctx, pools=ListenerPool(ctx.pools)), ack, body, view, client)

    done = Outbox.done

    def done_without_claiming(self: Outbox, notification: Notification, **kwargs: Any) -> list[Notification]:
        kwargs["claim_then"] = False  # follow-ups claimed by a transaction of their own, in the next round
        return done(self, notification, **kwargs)

    def open_every_time(self: notify.Notifier, user_id: str) -> str:
        return str(self.client.conversations_open(users=user_id)["channel"]["id"])

    outbox._WRITER = contextlib.nullcontext()  # type: ignore[assignment]  # every write to SQLite's busy handler
    Outbox.claim = claim  # type: ignore[method-assign]
    Outbox.done = done_without_claiming  # type: ignore[method-assign]
    notify.Notifier._dm_channel = open_every_time  # type: ignore[method-assign]
    notify.Notifier._deliver = deliver_naively  # type: ignore[method-assign]
    views.submit_request = submit_on_listener_pool  # type: ignore[assignment]


if os.environ.get("ACCESSBOT_LOAD_BENCH") == "1":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tree of this bench, not an installed one
    _time_waitress()
    if os.environ.get("ACCESSBOT_LOAD_NAIVE") == "1":
        _naive()
