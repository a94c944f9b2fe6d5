"""Two schedulers, one database: two worker processes run every job side by side.

Each worker is a real OS process running ``accessbot worker`` (``app.cli.serve.worker``: its own settings,
engine, Slack context and APScheduler scheduler) with one difference: the sync check and the access cycle run
every ``FAST`` seconds instead of every 60 and 20, so the two processes contend many times within seconds.
Two processes rather than two schedulers in threads: nothing is shared but the database, as in production,
and the SQLite variant exercises the lease's owner check across processes. A start barrier (a file) lets both
schedulers start within milliseconds of each other, so their first runs collide.

Against them: two EDR integrations whose vendor fakes hold every fetch for a second and record how many are
in flight at once, sync requests in rounds, attributes expiring while they run, and pending requests timing
out (half of them already due when the workers start). The test shows no integration is ever fetched by two
syncs at once, every requested sync runs exactly once, every expired attribute is audited exactly once, and
every timed-out request is expired exactly once with exactly one notification.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import func, select, update

from app import bootstrap
from app.access.read_model import AccessAudit, Notice
from app.config.source import ConfigSource
from app.core.clock import utcnow
from app.core.crypto import Cipher
from app.db import Database, audit
from app.db.migrate import upgrade
from app.db.tables import AuditEventRow
from app.db.tables.access import AccessRequestRow, NotificationRow, RequestStatus
from app.db.tables.vendors import IntegrationRow
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, AttributeWrite
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.sync import SyncRunner
from tests.conftest import PG_URL
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fakes.vendors import (
    HUNTRESS_KEY,
    HUNTRESS_SECRET,
    SENTINELONE_TOKEN,
    FakeHuntress,
    FakeSentinelOne,
    default_serial,
    huntress_agent,
    sentinelone_agent,
)
from tests.integration.test_crash_safety import PASSPHRASE, Proc, child_env, settings_for, wait_until

FAST = 0.3  # seconds between runs of the sync check and of the access cycle in the workers
DEVICES = 24
SYNC_ROUNDS = 3  # requested after the first sync (which adding the integrations requests)
EXPIRING = 16  # devices with two expiring attributes each
REQUESTS = 12
REQUESTER, BOB = "UREQ", "UBOB"

CONFIG_YAML = """
request_timeout: 1h
reminder_before: 10m
sync_interval: 1h
tailnet:
  expiry_sweep_interval: 1s
profiles:
  - id: prod
    description: Production access
    attribute: custom:prodAccess
    max_duration: 4h
    durations: [30m, 1h]
    approvers: [bob@example.com]
"""


def run_fast_worker() -> None:
    """A worker subprocess: ``accessbot worker`` with short job periods, started when the start file appears."""
    from app import bootstrap, scheduler
    from app.cli import serve

    bootstrap.services.add_sync_job = functools.partial(scheduler.add_sync_job, every_seconds=FAST)  # type: ignore[assignment]
    bootstrap.services.add_access_jobs = functools.partial(scheduler.add_access_jobs, every_seconds=FAST)  # type: ignore[assignment]
    start = Path(os.environ["ACCESSBOT_TEST_START_FILE"])
    print("ready for the start file", flush=True)
    deadline = time.monotonic() + 60
    while not start.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the start file never appeared")
        time.sleep(0.002)
    serve.worker()


class InFlight:
    """Mixin for the vendor fakes: each request is held ``STALL`` seconds; records the most in flight at once.

    All agents fit one page, so one request is one whole fetch, i.e. one sync of the integration.
    """

    STALL = 1.0

    def _init_recording(self) -> None:
        self._gauge = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.fetches = 0

    def _handle(self, handler: Any) -> Any:
        with self._gauge:
            self.in_flight += 1
            self.fetches += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.STALL)  # a slow vendor: any second fetch of this integration now overlaps
            return super()._handle(handler)  # type: ignore[misc]
        finally:
            with self._gauge:
                self.in_flight -= 1


class SlowHuntress(InFlight, FakeHuntress):
    def __init__(self) -> None:
        super().__init__([huntress_agent(i) for i in range(DEVICES)], rate_limit_per_minute=None)
        self._init_recording()


class SlowSentinelOne(InFlight, FakeSentinelOne):
    def __init__(self) -> None:
        super().__init__([sentinelone_agent(i) for i in range(DEVICES)])
        self._init_recording()


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database for both workers: the PostgreSQL test database, or a SQLite file of this test."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'shared.db'}")
        upgrade(db.engine)
        db.dispose()
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if not PG_URL:
        pytest.skip("PostgreSQL: set ACCESSBOT_TEST_DATABASE_URL to run this test against it")
    return str(request.getfixturevalue("db_url"))


def request_syncs(db: Database, at: datetime) -> None:
    """What changing an integration does: ask the schedulers for a sync."""
    with db.session() as session:
        session.execute(update(IntegrationRow).values(sync_requested_at=at))


def synced_since(integrations: Integrations, moment: datetime) -> bool:
    """Every integration ran a sync that started after ``moment``, successfully, and nothing is requested."""
    return all(
        i.sync_requested_at is None
        and i.last_sync_finished_at is not None
        and i.last_sync_started_at is not None
        and i.last_sync_started_at >= moment
        and i.last_result == "ok"
        for i in integrations.list()
    )


def test_two_worker_processes_share_the_jobs_without_doing_anything_twice(shared_url: str, tmp_path: Path) -> None:
    config = tmp_path / "accessbot.yml"
    config.write_text(CONFIG_YAML)
    start_file = tmp_path / "start"
    huntress, sentinelone = SlowHuntress().start(), SlowSentinelOne().start()
    slack = FakeSlackAPI(token=DEFAULT_TOKEN).start()
    slack.add_user(REQUESTER, "req@example.com", "req")
    slack.add_user(BOB, "bob@example.com", "bob")
    env = child_env(
        DATABASE_URL=shared_url,
        ACCESSBOT_CONFIG=str(config),
        SLACK_BOT_TOKEN=DEFAULT_TOKEN,
        SLACK_API_URL=slack.base_url,
        ACCESSBOT_SECRET_KEY=PASSPHRASE,
        ACCESSBOT_TEST_START_FILE=str(start_file),
    )
    runtime = bootstrap.build(settings_for(env))
    db = runtime.db
    workers: list[Proc] = []
    try:
        tailnet = runtime.tailnet
        assert isinstance(tailnet, BuiltinTailnet)
        setup = Actor("cli:setup")
        devices = [
            tailnet.add_device(
                name=f"host{i:02d}", user="req@example.com", serial_numbers=[default_serial(i)], actor=setup
            )
            for i in range(DEVICES)
        ]
        integrations = Integrations(db, Cipher.from_secret(PASSPHRASE))
        added = utcnow()
        integrations.add(
            "huntress",
            {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": huntress.url},
            actor="cli:admin",
        )
        integrations.add("sentinelone", {"url": sentinelone.url, "api_token": SENTINELONE_TOKEN}, actor="cli:admin")

        def synced(vendor: str, since: datetime) -> str | None:
            """``"synced"`` once a sync of ``vendor`` started after ``since`` has finished."""
            i = integrations.get(vendor)
            started, finished = i.last_sync_started_at, i.last_sync_finished_at
            return "synced" if started and finished and since <= started <= finished else None

        # pending requests: half already timed out when the workers start, half timing out while they run
        ctx = runtime.rewired(
            slack_client=WebClient(token=DEFAULT_TOKEN, base_url=slack.base_url), config=ConfigSource(config)
        ).slack
        request_ids = []
        for n in range(REQUESTS):
            request = ctx.access.submit(
                requester_id=REQUESTER,
                profile_id="prod",
                device=devices[n],
                duration=timedelta(hours=1),
                approver_ids=[BOB],
                reason=f"change {n}",
            )
            request_ids.append(request.id)
            timeout = utcnow() + (timedelta(seconds=-1) if n % 2 else timedelta(seconds=1 + n / 2))
            with db.session() as session:
                session.execute(
                    update(AccessRequestRow).where(AccessRequestRow.id == request.id).values(timeout_at=timeout)
                )

        # expiring attributes: a few seconds from now, spread over the first sweeps
        soon = utcnow() + timedelta(seconds=1.5)
        tailnet.set_many(
            {
                d.id: {
                    "custom:window": AttributeWrite(True, soon + timedelta(seconds=0.3 * n)),
                    "custom:ticket": AttributeWrite(n, soon + timedelta(seconds=0.2 * n)),
                }
                for n, d in enumerate(devices[:EXPIRING])
            },
            actor=setup,
        )

        for n in (1, 2):
            workers.append(Proc([sys.executable, "-c", CHILD], env, tmp_path, tmp_path / f"worker-{n}.log"))
        for worker in workers:
            worker.wait_for("ready for the start file")
        start_file.touch()
        for worker in workers:
            worker.wait_for("running jobs")

        wait_until(lambda: synced_since(integrations, added), "the first sync of both integrations")
        # rounds of requested syncs; while a worker fetches, this process (a third one) asks for the same sync
        # explicitly, as `accessbot sync` or /posture sync would: the lock must turn it away
        explicit = SyncRunner(db, tailnet, integrations, mode=NamespaceMode.VENDOR)
        turned_away = []
        for _ in range(SYNC_ROUNDS):
            asked = utcnow()
            request_syncs(db, asked)
            for vendor, fake in (("huntress", huntress), ("sentinelone", sentinelone)):

                def fetching_or_synced(fake: InFlight = fake, vendor: str = vendor, asked: datetime = asked) -> Any:
                    return "fetching" if fake.in_flight else synced(vendor, asked)

                if wait_until(fetching_or_synced, f"a worker to sync {vendor}") == "fetching":
                    report = explicit.run(vendor)
                    turned_away.append((report.result, report.error))
            wait_until(lambda asked=asked: synced_since(integrations, asked), "a requested sync of both")
        assert turned_away and set(turned_away) == {("skipped", "another sync of this integration is running")}

        def all_done() -> bool:
            with db.session() as session:
                expiries = session.scalar(
                    select(func.count()).select_from(AuditEventRow).where(AuditEventRow.actor == "system:expiry")
                )
                open_requests = session.scalar(
                    select(func.count()).where(AccessRequestRow.status == RequestStatus.PENDING)
                )
            return expiries == 2 * EXPIRING and open_requests == 0 and ctx.outbox.pending_count() == 0

        wait_until(all_done, "the expiries, the request timeouts and their notifications")
        running_logs = {worker.log.name: worker.output() for worker in workers}  # no job may have failed
        for worker in workers:
            worker.close()
            assert worker.popen.returncode == 0, worker.output()
        logs = {worker.log.name: worker.output() for worker in workers}
    finally:
        for worker in workers:
            worker.close()
        huntress.stop()
        sentinelone.stop()
        slack.stop()
        db.dispose()

    # syncs: never two fetches of one integration at once, and exactly one sync per request
    assert (huntress.max_in_flight, sentinelone.max_in_flight) == (1, 1)
    assert (huntress.fetches, sentinelone.fetches) == (SYNC_ROUNDS + 1, SYNC_ROUNDS + 1)
    db = Database(shared_url)
    try:
        with db.session() as session:
            sync_events = dict(
                session.execute(
                    select(AuditEventRow.actor, func.count())
                    .where(AuditEventRow.actor.like("system:sync:%"))
                    .group_by(AuditEventRow.actor)
                ).all()
            )
            expired = [(e.target, e.old_value) for e in audit.query(session, actor="system:expiry")]
        assert sync_events == {"system:sync:huntress": 3 * DEVICES, "system:sync:sentinelone": 6 * DEVICES}
        written = BuiltinTailnet(db).attributes_with_keys({"huntress:firewallStatus", "sentinelOne:infected"})
        assert all(
            written[d.id] == {"huntress:firewallStatus": "Enabled", "sentinelOne:infected": False} for d in devices
        )

        # expiries: each attribute purged and audited exactly once
        assert sorted(expired) == sorted(
            [(f"device/{d.id}/attributes/custom:window", True) for d in devices[:EXPIRING]]
            + [(f"device/{d.id}/attributes/custom:ticket", n) for n, d in enumerate(devices[:EXPIRING])]
        )
        assert BuiltinTailnet(db).attributes_with_keys({"custom:window", "custom:ticket"}) == {}

        # timed-out requests: each expired once, told once; each announced to its approver once before that
        with db.session() as session:
            for request_id in request_ids:
                row = session.get(AccessRequestRow, request_id)
                assert row is not None and row.status == RequestStatus.EXPIRED
                actions = [e.action for e in audit.query(session) if e.target == f"request/{request_id}"]
                assert actions.count(AccessAudit.REQUEST_EXPIRED) == 1, actions
                kinds = list(
                    session.scalars(
                        select(NotificationRow.kind).where(
                            NotificationRow.request_id == request_id, NotificationRow.sent_at.is_not(None)
                        )
                    )
                )
                assert sorted(kinds) == sorted([Notice.REQUESTED, Notice.REQUEST_EXPIRED]), kinds
    finally:
        db.dispose()
    posts = [c for c in slack.calls("chat.postMessage") if c.ok]
    for request_id in request_ids:
        told = [c for c in posts if f"request #{request_id} in time" in c.params.get("text", "")]
        asked = [
            c for c in posts if c.response["channel"] == f"D{BOB}" and f"request #{request_id} (" in c.params["text"]
        ]
        assert (len(told), len(asked)) == (1, 1), request_id
    for name, output in running_logs.items():
        assert "Traceback" not in output, f"{name}:\n{output}"
    print(
        "work per worker:",
        {
            name: {
                "syncs": len(re.findall(r"sync (huntress|sentinelone): ", output)),
                "sweeps that purged": len(re.findall(r"expiry sweep removed", output)),
                "access cycles that acted": len(re.findall(r"access cycle: ", output)),
            }
            for name, output in logs.items()
        },
    )


CHILD = "from tests.integration.test_two_schedulers import run_fast_worker; run_fast_worker()"


def test_a_sync_another_scheduler_has_just_run_is_not_run_again(db_url: str) -> None:
    """The scheduler's runs check again under the lock whether the sync is still due (no back-to-back repeats)."""
    first, second = Database(db_url), Database(db_url)
    with FakeHuntress([huntress_agent(0)], rate_limit_per_minute=None) as fake:
        try:
            cipher = Cipher.from_secret(PASSPHRASE)
            runners = [
                SyncRunner(db, BuiltinTailnet(db), Integrations(db, cipher), mode=NamespaceMode.VENDOR)
                for db in (first, second)
            ]
            runners[0].integrations.add(
                "huntress",
                {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake.url},
                actor="cli:admin",
            )
            assert runners[0].due() == runners[1].due() == ["huntress"]  # both schedulers see it due ...
            assert [r.result for r in runners[1].run_due()] == ["ok"]  # ... one runs it ...
            late = runners[0].run("huntress", only_if_due=True)  # ... the other gets the lock afterwards
            assert (late.result, fake.requests) == ("skipped", 1), late.error
            request_syncs(first, utcnow())
            assert [r.result for r in runners[0].run_due()] == ["ok"]  # a new request is served
            assert fake.requests == 2
            assert runners[1].run("huntress").result == "ok"  # an explicit sync always runs
        finally:
            first.dispose()
            second.dispose()
