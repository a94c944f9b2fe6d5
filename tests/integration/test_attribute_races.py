"""Concurrent writes of one attribute: no 500, the later write wins, and the audit's ``old`` is exact.

A DELETE and a POST of the same attribute are fired at the same instant through the built-in tailnet's HTTP API
(served over TCP); ``set_many`` batches and the expiry sweep race each other directly. Afterwards the audit events
of each attribute, replayed in id order, must form an unbroken chain: every event's ``old`` is the value the
previous one left (``None`` after a delete or an expiry), and the stored state is the last event's ``new``.
Values differ per round, so an event that audits a stale ``old`` breaks the chain.

Runs on SQLite, and on PostgreSQL when ``ACCESSBOT_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables import AuditEventRow
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import NotFound
from app.tailnet.models import Actor, AttributeValue, AttributeWrite, Device
from tests.serving import serving

ADMIN = Actor("cli:admin")
KEY = "custom:raceAccess"
ROUNDS = 100
TIME_BOUND = 60.0
"""Seconds of racing per test at most (each test stops early rather than outlast it)."""
MIN_ROUNDS = 20
"""Rounds that must have run within ``TIME_BOUND`` for a test to count (a round takes a few ms normally)."""


# -- helpers ------------------------------------------------------------------------------------------


def chain_errors(db: Database, device_id: str, key: str, stored: AttributeValue | None) -> list[str]:
    """What is wrong with the audit chain of one attribute (empty when every ``old`` is exact)."""
    target = audit.attribute_target(device_id, key)
    with db.session() as session:
        rows = session.execute(
            select(AuditEventRow.id, AuditEventRow.old_value, AuditEventRow.new_value, AuditEventRow.details)
            .where(AuditEventRow.target == target)
            .order_by(AuditEventRow.id)
        ).all()
    errors: list[str] = []
    state: AttributeValue | None = None
    for event_id, old, new, details in rows:
        if old != state:
            errors.append(f"event {event_id} ({details.get('change')}): old={old!r}, but the value was {state!r}")
        state = new
    if state != stored:
        errors.append(f"stored value {stored!r}, but the last event left {state!r}")
    return errors


def stored_value(builtin: BuiltinTailnet, device_id: str, key: str) -> AttributeValue | None:
    return builtin.get_attributes(device_id).attributes.get(key)


def race(*jobs: Callable[[], Any]) -> list[Any]:
    """Run ``jobs`` in threads released by one barrier; their results (or exceptions), in order."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(index: int, job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = job()
        except Exception as exc:  # reported to the test, which names it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a racing write hung (deadlock?)"
    return results


class Racers:
    """Long-lived worker threads (one httpx client each) released together by a barrier each round."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.start = threading.Barrier(count + 1)
        self.done = threading.Barrier(count + 1)
        self.jobs: list[Callable[[], Any]] = []
        self.results: list[Any] = [None] * count
        self.stop = False
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(count)]
        for thread in self.threads:
            thread.start()

    def _loop(self, index: int) -> None:
        while True:
            self.start.wait()
            if self.stop:
                return
            try:
                self.results[index] = self.jobs[index]()
            except Exception as exc:
                self.results[index] = exc
            self.done.wait()

    def run(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        self.jobs = jobs
        self.start.wait(timeout=60)
        self.done.wait(timeout=60)
        return list(self.results)

    def close(self) -> None:
        self.stop = True
        try:
            self.start.wait(timeout=5)
        except threading.BrokenBarrierError:  # a round already failed; the threads are daemons
            return
        for thread in self.threads:
            thread.join(timeout=5)


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def base_url(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> Iterator[str]:
    with serving(make_api(builtin, db, clock=clock)) as url:
        yield url


@pytest.fixture
def api_key(db: Database, clock: FrozenClock) -> str:
    return AuthStore(db, clock=clock).create_api_key(actor=ADMIN, description="races")[1]


@pytest.fixture
def laptop(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="laptop.tail1234.ts.net", user="alice@example.com", os="macOS", actor=ADMIN)


# -- tests --------------------------------------------------------------------------------------------


def test_concurrent_delete_and_post_of_one_attribute_over_http(
    builtin: BuiltinTailnet, db: Database, base_url: str, api_key: str, laptop: Device
) -> None:
    path = f"/api/v2/device/{laptop.id}/attributes/{KEY}"
    clients = [httpx.Client(base_url=base_url, auth=(api_key, ""), timeout=30) for _ in range(2)]
    racers = Racers(2)
    answers: list[tuple[int, str, int, str]] = []  # (round, method, status, body) of every answer
    rounds = 0
    deadline = time.monotonic() + TIME_BOUND
    try:
        for _ in range(2):  # open both keep-alive connections before racing
            for client in clients:
                assert client.get(f"/api/v2/device/{laptop.id}/attributes").status_code == 200
        for n in range(ROUNDS):
            if time.monotonic() > deadline:
                break
            builtin.set_attribute(laptop.id, KEY, f"before_{n}", actor=ADMIN)
            value = f"posted_{n}"
            delete, post = racers.run(
                [
                    lambda: clients[0].delete(path),
                    lambda value=value: clients[1].post(path, json={"value": value}),
                ]
            )
            for method, response in (("DELETE", delete), ("POST", post)):
                assert isinstance(response, httpx.Response), f"round {n}: {method} raised {response!r}"
                answers.append((n, method, response.status_code, response.text))
            rounds = n + 1
    finally:
        racers.close()
        for client in clients:
            client.close()

    assert rounds >= MIN_ROUNDS, f"only {rounds} rounds in {TIME_BOUND} s"
    errors = [a for a in answers if a[2] == 500]
    unexpected = [a for a in answers if not (a[2] == 200 or (a[1] == "DELETE" and a[2] == 404))]
    mismatches = chain_errors(db, laptop.id, KEY, stored_value(builtin, laptop.id, KEY))
    summary = (
        f"{rounds} rounds: {len(errors)} answers of 500, {len(unexpected)} not 200/404, "
        f"{len(mismatches)} audit mismatches; {unexpected[:3]} {mismatches[:3]}"
    )
    assert (errors, unexpected, mismatches) == ([], [], []), summary


def test_concurrent_set_many_batches_over_overlapping_devices(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock
) -> None:
    """Two sync-like batches over the same devices, in opposite orders, with sets and deletes: no deadlock."""
    devices = [builtin.add_device(name=f"host{i}", user=f"u{i}@example.com", actor=ADMIN) for i in range(30)]
    ids = [device.id for device in devices]
    keys = ["custom:a", "custom:b"]
    writers = [Actor("cli:one"), Actor("cli:two")]
    rounds = 0
    deadline = time.monotonic() + TIME_BOUND
    for n in range(ROUNDS // 2):
        if time.monotonic() > deadline:
            break

        def batch(writer: int, n: int = n) -> None:
            order = ids if writer == 0 else ids[::-1]  # the same devices, locked in opposite request orders
            changes: dict[str, dict[str, AttributeWrite | None]] = {}
            for i, device_id in enumerate(order):
                if (i + n + writer) % 5 == 0:
                    changes[device_id] = {keys[0]: None, keys[1]: AttributeWrite(f"w{writer}_r{n}_{i}")}
                else:
                    changes[device_id] = {keys[0]: AttributeWrite(f"w{writer}_r{n}_{i}"), keys[1]: None}
            builtin.set_many(changes, actor=writers[writer])

        results = race(lambda: batch(0), lambda: batch(1))
        assert results == [None, None], f"round {n}: {results}"
        rounds = n + 1
    assert rounds >= MIN_ROUNDS // 2, f"only {rounds} rounds in {TIME_BOUND} s"
    mismatches = [
        error
        for device_id in ids
        for key in keys
        for error in chain_errors(db, device_id, key, stored_value(builtin, device_id, key))
    ]
    assert mismatches == [], f"{len(mismatches)} audit mismatches in {rounds} rounds: {mismatches[:5]}"


@pytest.mark.parametrize("sweep_ahead", [False, True], ids=["same-clock", "sweep-ahead"])
def test_writes_racing_the_expiry_sweep(
    builtin: BuiltinTailnet, db: Database, clock: FrozenClock, sweep_ahead: bool
) -> None:
    """The sweep deletes an expired value while a write replaces it and another write deletes it.

    ``same-clock``: all three see the value expired (each write purges it first, as the sweep does).
    ``sweep-ahead``: the sweep's clock runs 2 s ahead (another process), so the writes still read the value as
    live when the sweep deletes it under them.
    """
    sweep_clock = FrozenClock(clock() + timedelta(seconds=2 if sweep_ahead else 0))
    sweeper = BuiltinTailnet(db, clock=sweep_clock)
    device = builtin.add_device(name="laptop", user="alice@example.com", actor=ADMIN)
    rounds = 0
    deadline = time.monotonic() + TIME_BOUND
    for n in range(ROUNDS // 2):
        if time.monotonic() > deadline:
            break
        expiry = clock() + timedelta(seconds=1)
        builtin.set_attribute(device.id, KEY, f"expiring_{n}", actor=ADMIN, expiry=expiry)
        if not sweep_ahead:
            clock.advance(seconds=2)
            sweep_clock.advance(seconds=2)

        def delete() -> str:
            try:
                builtin.delete_attribute(device.id, KEY, actor=ADMIN)
            except NotFound:
                return "not found"
            return "deleted"

        results = race(
            sweeper.purge_expired,
            lambda n=n: builtin.set_attribute(device.id, KEY, f"set_{n}", actor=ADMIN),
            delete,
        )
        assert not any(isinstance(result, Exception) for result in results[:2]), f"round {n}: {results}"
        assert results[2] in ("deleted", "not found"), f"round {n}: {results}"
        clock.advance(seconds=10)
        sweep_clock.advance(seconds=10)
        rounds = n + 1
    assert rounds >= MIN_ROUNDS // 2, f"only {rounds} rounds in {TIME_BOUND} s"
    mismatches = chain_errors(db, device.id, KEY, stored_value(builtin, device.id, KEY))
    assert mismatches == [], f"{len(mismatches)} audit mismatches in {rounds} rounds: {mismatches[:5]}"
