"""Crash safety: accessbot processes killed with SIGKILL at the worst moment, then restarted.

The test is the parent: it runs the real entry points (``python -m app serve|worker|sync``) as subprocesses
against loopback fakes (Slack Web API, Tailscale API, Huntress), kills them while a fake holds their request,
restarts them and checks what the database, the tailnet and Slack show afterwards:

- an approval killed while the attribute write is in flight ends granted exactly once (the write landed) or
  failed with a Retry button (it did not), never stuck in ``granting`` and never written twice;
- a large EDR sync killed in its write phase leaves whole batches only (each ``set_many`` chunk is one
  transaction, with its audit events), removes nothing it should keep, and the next sync runs at once and
  completes (SQLite: the dead owner's lease is taken over; PostgreSQL: the advisory lock died with it);
- reminders and expiry notices claimed by a killed worker are delivered by the next one once the claim's
  lease has passed, each exactly once.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
from slack_sdk import WebClient
from sqlalchemy import func, select, text, update

from app import bootstrap
from app.access.read_model import AccessAudit, Notice
from app.bootstrap import Services
from app.config.settings import Settings
from app.config.source import ConfigSource
from app.core.clock import FrozenClock, utcnow
from app.core.crypto import Cipher
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.migrate import upgrade
from app.db.tables import AuditEventRow
from app.db.tables.access import AccessRequestRow, NotificationRow, RequestStatus
from app.db.tables.vendors import IntegrationRow
from app.slack.context import SlackContext
from app.slack.ids import ActionId
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors.integrations import Integrations
from app.vendors.lock import LEASE, integration_lock
from app.vendors.mapping import NamespaceMode
from app.vendors.sync import SyncRunner
from app.web.server import make_server
from tests.conftest import PG_URL, written
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI, Params
from tests.fakes.slack_payloads import SlackEventsClient, block_actions_in_message
from tests.fakes.vendors import HUNTRESS_KEY, HUNTRESS_SECRET, FakeHuntress, default_serial, huntress_agent

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "crash-safety-signing-secret-0123456789"
TOKEN = DEFAULT_TOKEN
PASSPHRASE = "crash safety credentials passphrase"
REQUESTER, BOB, ADMIN = "UREQ", "UBOB", "UADMIN"

CONFIG_YAML = """
admins: [UADMIN]
request_timeout: 1h
reminder_before: 10m
grant_recovery_after: 1s
notification_lease: 2s
profiles:
  - id: prod
    description: Production access
    attribute: custom:prodAccess
    max_duration: 4h
    durations: [30m, 1h, 4h]
    approvers: [bob@example.com]
    notify_channel: CACCESS
"""


# ----------------------------------------------------------------------------------------------------
# processes and waiting (also used by test_two_schedulers)
# ----------------------------------------------------------------------------------------------------


def child_env(**settings: str) -> dict[str, str]:
    """The environment of an accessbot subprocess: this one without accessbot's own settings, plus ``settings``.

    ``PYTHONPATH`` points at this checkout, so the subprocess runs the code under test even where accessbot is
    also installed elsewhere.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "TAILSCALE_", "ACCESSBOT_", "METRICS_", "LOG_"))
        and k not in ("DATABASE_URL", "PORT")
    }
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    env.update(settings)
    return env


def wait_until(condition: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy (and return that); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_past(moment: datetime) -> None:
    """Let the wall clock pass ``moment`` (a deadline written in the database, such as a lease's end)."""
    delay = (moment - utcnow()).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)


class Proc:
    """A subprocess whose output goes to a log file (so it can never block on a full pipe)."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT, text=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in the output; fails if the process exits or ``timeout`` passes."""

        def found() -> re.Match[str] | None:
            match = re.search(pattern, self.output())
            if match is None and self.popen.poll() is not None:
                raise AssertionError(f"exited ({self.popen.returncode}) before {pattern!r}:\n{self.output()}")
            return match

        try:
            return wait_until(found, f"{pattern!r} in {self.log.name}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.log.name} ---\n{self.output()}") from None

    def sigkill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        assert self.popen.wait(timeout=10) == -signal.SIGKILL

    def close(self) -> None:
        """Stop it if it still runs (SIGTERM, then SIGKILL) and close the log."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._out.close()


@contextmanager
def running(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[Proc]:
    proc = Proc(cmd, env, cwd, log)
    try:
        yield proc
    finally:
        proc.close()


def accessbot(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def web_url(proc: Proc) -> str:
    """The base URL ``accessbot serve --port 0`` says it listens on."""
    port = proc.wait_for(r"HTTP on 127\.0\.0\.1:(\d+)").group(1)
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------------------------------
# fakes that can hold a request while its sender is killed
# ----------------------------------------------------------------------------------------------------


class HeldSlack(FakeSlackAPI):
    """The fake Slack Web API, able to hold the next call of one method until ``drop_held`` (then it fails).

    A held call models a request the killed process sent but Slack never processed.
    """

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.held = threading.Event()
        self._release = threading.Event()
        self._hold: str | None = None
        self._hold_lock = threading.Lock()
        for user_id, email, name in (
            (REQUESTER, "req@example.com", "req"),
            (BOB, "bob@example.com", "bob"),
            (ADMIN, "admin@example.com", "admin"),
        ):
            self.add_user(user_id, email, name)
        self.add_channel("CACCESS", "access-requests")

    def hold_next(self, method: str) -> None:
        with self._hold_lock:
            self._hold = method

    def drop_held(self) -> None:
        self._release.set()

    def _dispatch(
        self, method: str, params: Params, authorization: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._hold_lock:
            hold = self._hold == method
            if hold:
                self._hold = None
        if not hold:
            return super()._dispatch(method, params, authorization)
        self.held.set()
        self._release.wait(timeout=60)
        answer = {"ok": False, "error": "request_dropped"}
        self._record(method, params, 503, answer)
        return 503, answer, {}

    def ok_posts(self, channel: str, containing: str) -> list[dict[str, Any]]:
        """Messages successfully posted to ``channel`` whose text contains ``containing``."""
        return [
            c.params
            for c in self.calls("chat.postMessage")
            if c.ok and c.response.get("channel") == channel and containing in str(c.params.get("text", ""))
        ]


class HeldWrites:
    """WSGI middleware for the Tailscale-API fake: holds the first attribute write until the test decides.

    ``finish(apply=True)`` lets the held write reach the store after its sender is gone (the write landed);
    ``finish(apply=False)`` drops it (it never did). Later writes pass straight through.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.arrived = threading.Event()
        self.writes: list[str] = []
        self._decided = threading.Event()
        self._done = threading.Event()
        self._apply = False
        self._lock = threading.Lock()

    def finish(self, *, apply: bool) -> None:
        self._apply = apply
        self._decided.set()
        assert self._done.wait(10), "the held write did not finish"

    def close(self) -> None:
        """Let a write still held (a failed test) go, dropped."""
        self._decided.set()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not (environ["REQUEST_METHOD"] == "POST" and "/attributes/" in environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)  # the whole request is here before anyone is told so
        with self._lock:
            first = not self.writes
            self.writes.append(environ["PATH_INFO"])
        if not first:
            return self.app(environ, start_response)
        self.arrived.set()
        try:
            self._decided.wait(timeout=60)
            if self._apply:
                return self.app(environ, start_response)
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"message": "dropped"}']
        finally:
            self._done.set()


# ----------------------------------------------------------------------------------------------------
# helpers about requests
# ----------------------------------------------------------------------------------------------------


def settings_for(env: dict[str, str]) -> Settings:
    """The settings a subprocess started with ``env`` reads, for this process to share its database."""
    names = (
        "DATABASE_URL",
        "ACCESSBOT_CONFIG",
        "SLACK_BOT_TOKEN",
        "SLACK_API_URL",
        "TAILSCALE_API_URL",
        "TAILSCALE_API_KEY",
        "ACCESSBOT_SECRET_KEY",
    )
    return Settings(**{name: env[name] for name in names if name in env})  # type: ignore[arg-type]


def context(
    services: Services, fake: FakeSlackAPI, config: Path, clock: Callable[[], datetime] = utcnow
) -> SlackContext:
    client = WebClient(token=TOKEN, base_url=fake.base_url)
    return services.rewired(slack_client=client, config=ConfigSource(config), clock=clock).slack


def request_actions(db: Database, request_id: int) -> list[str]:
    with db.session() as session:
        return [e.action for e in audit.query(session) if e.target == f"request/{request_id}"]


def attribute_sets(db: Database, device_id: str) -> list[Any]:
    """accessbot's audit events for writes of the granted attribute on ``device_id``."""
    with db.session() as session:
        return [
            e
            for e in audit.query(session, action=AuditAction.UPDATE_NODE_ATTRIBUTE)
            if e.target == audit.attribute_target(device_id, "custom:prodAccess")
        ]


def notifications(db: Database, request_id: int, kind: str) -> list[NotificationRow]:
    with db.session() as session:
        return list(
            session.scalars(
                select(NotificationRow).where(NotificationRow.request_id == request_id, NotificationRow.kind == kind)
            )
        )


def buttons(message: dict[str, Any]) -> set[str]:
    return {
        element["action_id"]
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }


def dm_of(fake: FakeSlackAPI, user: str) -> tuple[str, str]:
    """(channel, ts) of the first message posted to ``user``'s DM."""
    call = next(c for c in fake.calls("chat.postMessage") if c.response.get("channel") == f"D{user}")
    return call.response["channel"], call.response["ts"]


def click(url: str, fake: FakeSlackAPI, action: str, request_id: int, channel: str, ts: str) -> None:
    body = block_actions_in_message(
        action,
        str(request_id),
        BOB,
        channel,
        ts,
        response_url=fake.response_url_for(f"bob-{action}"),
        message=fake.message(channel, ts),
    )
    with SlackEventsClient(url, SIGNING_SECRET) as slack:
        response = slack.post(body)
    assert response.status_code == 200, response.text


# ----------------------------------------------------------------------------------------------------
# (a) killed in the middle of an approval
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("held_write", ["lands", "lost"])
def test_sigkill_during_the_attribute_write_of_an_approval(held_write: str, db_url: str, tmp_path: Path) -> None:
    """Tailscale mode: the approval's POST .../attributes/... is held at the fake while the app is killed."""
    fake_db = Database(f"sqlite:///{tmp_path / 'tailscale-fake.db'}")  # the fake tailnet's own store
    upgrade(fake_db.engine)
    store = BuiltinTailnet(fake_db)
    setup = Actor("cli:setup")
    laptop = store.add_device(name="rita-laptop.tail1.ts.net", user="req@example.com", os="macos", actor=setup)
    _, api_key = AuthStore(fake_db).create_api_key(actor=setup)
    writes = HeldWrites(make_api(store, fake_db))
    api_server = make_server(writes, "127.0.0.1", 0)
    threading.Thread(target=api_server.serve_forever, daemon=True).start()
    config = tmp_path / "accessbot.yml"
    config.write_text(CONFIG_YAML)
    fake = HeldSlack().start()
    env = child_env(
        DATABASE_URL=db_url,
        ACCESSBOT_CONFIG=str(config),
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.base_url,
        TAILSCALE_API_URL=f"http://127.0.0.1:{api_server.server_port}",
        TAILSCALE_API_KEY=api_key,
        ACCESSBOT_SECRET_KEY=PASSPHRASE,
    )
    runtime = bootstrap.build(settings_for(env))
    db = runtime.db
    try:
        ctx = context(runtime, fake, config)
        device = runtime.tailnet.get_device(laptop.id)
        request = ctx.access.submit(
            requester_id=REQUESTER,
            profile_id="prod",
            device=device,
            duration=timedelta(hours=1),
            approver_ids=[BOB],
            reason="incident 42",
        )
        ctx.notifier.deliver()
        channel, ts = dm_of(fake, BOB)
        assert buttons(fake.message(channel, ts)) == {ActionId.APPROVE, ActionId.DENY}

        serve_web = accessbot("serve", "--no-scheduler", "--host", "127.0.0.1", "--port", "0")
        with running(serve_web, env, tmp_path, tmp_path / "serve-1.log") as web:
            click(web_url(web), fake, ActionId.APPROVE, request.id, channel, ts)
            assert writes.arrived.wait(30), web.output()
            assert ctx.access.get(request.id).status == RequestStatus.GRANTING
            web.sigkill()

        writes.finish(apply=held_write == "lands")
        expected = {"custom:prodAccess": True} if held_write == "lands" else {}
        assert written(store.get_attributes(laptop.id)) == expected
        stuck = ctx.access.get(request.id)
        assert stuck.status == RequestStatus.GRANTING  # nothing in the database moved it: the process is gone
        with db.session() as session:
            granting_since = session.scalar(
                select(AccessRequestRow.granting_since).where(AccessRequestRow.id == request.id)
            )
        assert granting_since is not None
        wait_past(granting_since + timedelta(seconds=1))  # grant_recovery_after in CONFIG_YAML

        serve_all = accessbot("serve", "--host", "127.0.0.1", "--port", "0")  # with the scheduler this time
        with running(serve_all, env, tmp_path, tmp_path / "serve-2.log") as web:
            url = web_url(web)

            def resolved() -> Any:
                current = ctx.access.get(request.id)
                done = current.status in (RequestStatus.GRANTED, RequestStatus.FAILED)
                return current if done and ctx.outbox.pending_count() == 0 else None

            final = wait_until(resolved, "the restarted app to resolve the interrupted grant")
            approver_view = fake.message(channel, ts)
            requester_dm = f"D{REQUESTER}"
            if held_write == "lands":
                current = store.get_attributes(laptop.id)
                assert final.status == RequestStatus.GRANTED
                assert final.expires_at == current.expiries["custom:prodAccess"]
                assert len(writes.writes) == 1  # recovery read the tailnet; it did not write again
                # the write the killed process never recorded is in the audit log once, by the approver
                [adopted] = attribute_sets(db, laptop.id)
                assert (adopted.actor, adopted.new_value, adopted.details.get("recovered")) == (BOB, True, True)
                assert adopted.expiry == final.expires_at
                assert request_actions(db, request.id).count(AccessAudit.GRANTED) == 1
                assert AccessAudit.GRANT_FAILED not in request_actions(db, request.id)
                assert buttons(approver_view) == {ActionId.REVOKE}
                assert "Access granted until" in json.dumps(approver_view)
            else:
                assert final.status == RequestStatus.FAILED and "interrupted" in (final.last_error or "")
                assert written(store.get_attributes(laptop.id)) == {}
                assert request_actions(db, request.id).count(AccessAudit.GRANT_FAILED) == 1
                assert AccessAudit.GRANTED not in request_actions(db, request.id)
                assert buttons(approver_view) == {ActionId.RETRY}  # visibly retryable
                assert len(fake.ok_posts(requester_dm, "writing the attribute failed")) == 1
                click(url, fake, ActionId.RETRY, request.id, channel, ts)

                def granted() -> bool:
                    return (
                        ctx.access.get(request.id).status == RequestStatus.GRANTED and ctx.outbox.pending_count() == 0
                    )

                wait_until(granted, "the retried grant to be written and announced")
                assert written(store.get_attributes(laptop.id)) == {"custom:prodAccess": True}
                assert len(writes.writes) == 2  # the lost write and the retry
                assert [e.actor for e in attribute_sets(db, laptop.id)] == [BOB]  # only the retry wrote
                assert request_actions(db, request.id).count(AccessAudit.GRANTED) == 1
                assert buttons(fake.message(channel, ts)) == {ActionId.REVOKE}
            # either way: granted once, announced once
            assert len(notifications(db, request.id, Notice.GRANTED)) == 1
            assert len(fake.ok_posts(requester_dm, "is granted until")) == 1
            assert len(fake.ok_posts("CACCESS", "was granted")) == 1
    finally:
        writes.close()
        api_server.shutdown()
        api_server.server_close()
        fake.stop()
        db.dispose()
        fake_db.dispose()


# ----------------------------------------------------------------------------------------------------
# (b) killed in the write phase of a large sync
# ----------------------------------------------------------------------------------------------------

DEVICES = 2500  # three set_many chunks of (at most) 1,000 devices on the built-in tailnet
GONE = 300  # agents that disappear before the killed sync: their devices lose the vendor's attributes
HUNTRESS_KEYS = ("huntress:defenderPolicyStatus", "huntress:defenderStatus", "huntress:firewallStatus")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file of this test, or the PostgreSQL test database."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'crash.db'}")
        upgrade(db.engine)
        db.dispose()
        return f"sqlite:///{tmp_path / 'crash.db'}"
    if not PG_URL:
        pytest.skip("PostgreSQL: set ACCESSBOT_TEST_DATABASE_URL to run this test against it")
    return str(request.getfixturevalue("db_url"))


def sync_changes(db: Database, after_id: int) -> int:
    """How many changes the sync has committed (each is audited in its chunk's transaction) since ``after_id``."""
    with db.engine.connect() as conn:
        query = "SELECT count(*) FROM audit_events WHERE actor = 'system:sync:huntress' AND id > :after"
        return int(conn.execute(text(query), {"after": after_id}).scalar() or 0)


def sync_audit(db: Database, after_id: int) -> list[str]:
    """Targets of the sync's audit events after event ``after_id``."""
    with db.session() as session:
        return list(
            session.scalars(
                text(
                    "SELECT target FROM audit_events WHERE actor = 'system:sync:huntress' AND id > :after ORDER BY id"
                ),
                {"after": after_id},
            )
        )


def test_sigkill_in_the_write_phase_of_a_large_sync(backend_url: str, tmp_path: Path) -> None:
    db = Database(backend_url)
    fake = FakeHuntress(rate_limit_per_minute=None).__enter__()  # stopped in ``finally``
    try:
        builtin = BuiltinTailnet(db)
        builtin.import_devices(
            [
                {
                    "id": str(10**15 + i),
                    "nodeId": f"n{i:010d}CNTRL",
                    "name": f"host{i:05d}.tail1.ts.net",
                    "user": f"user{i}@example.com",
                    "os": "windows",
                    "postureIdentity": {"serialNumbers": [default_serial(i)]},
                }
                for i in range(DEVICES)
            ],
            actor=Actor("cli:setup"),
        )
        devices = builtin.list_devices()  # the sync's order: by name
        builtin.set_attribute(devices[0].id, "custom:keep", True, actor=Actor("cli:setup"))
        integrations = Integrations(db, Cipher.from_secret(PASSPHRASE))
        integrations.add(
            "huntress",
            {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake.url},
            actor="cli:admin",
        )
        fake.set_agents(huntress_agent(i) for i in range(DEVICES))
        first = SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR).run("huntress")
        assert (first.result, first.sets) == ("ok", 3 * DEVICES), first.error
        with db.session() as session:
            before = session.scalar(select(func.max(AuditEventRow.id))) or 0

        # the next sync changes the firewall status of every remaining device and drops GONE agents
        kept = DEVICES - GONE
        fake.set_agents(huntress_agent(i, firewall_status="Disabled") for i in range(kept))
        env = child_env(DATABASE_URL=backend_url, ACCESSBOT_SECRET_KEY=PASSPHRASE)
        with running(accessbot("sync", "huntress"), env, tmp_path, tmp_path / "sync-killed.log") as sync:
            # the first committed change means a whole chunk is in: kill at once, with the next chunk under way
            wait_until(lambda: sync_changes(db, before) > 0, "the first changes of the second sync", 60, 0.005)
            sync.sigkill()

        # whole chunks only: the first k*1,000 devices changed (with their audit events), none of the rest
        committed = len(sync_audit(db, before))
        assert committed in (1000, 2000), f"{committed} changes committed: not whole chunks, or not mid-sync"
        now = builtin.attributes_with_keys(HUNTRESS_KEYS)
        for n, device in enumerate(devices):
            values = now.get(device.id, {})
            assert set(values) == set(HUNTRESS_KEYS), f"device {n} lost attributes: {values}"  # nothing removed
            assert values["huntress:firewallStatus"] == ("Disabled" if n < committed else "Enabled"), n
        assert set(sync_audit(db, before)) == {
            f"device/{d.id}/attributes/huntress:firewallStatus" for d in devices[:committed]
        }
        assert written(builtin.get_attributes(devices[0].id))["custom:keep"] is True

        if db.dialect == "sqlite":  # the dead process still holds its lease ...
            with db.session() as session:
                owner, until = session.execute(select(IntegrationRow.lease_owner, IntegrationRow.lease_until)).one()
            assert owner is not None and owner.startswith(f"{sync.pid}@") and until > utcnow()
        else:  # ... PostgreSQL released the advisory lock with the dead session
            wait_until(lambda: advisory_locks(db) == 0, "PostgreSQL to release the dead session's advisory lock")

        # restarted, the next sync runs at once and completes: every change made exactly once overall
        result = subprocess.run(
            accessbot("sync", "huntress", "--json"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        (report,) = json.loads(result.stdout)
        assert report["result"] == "ok", report
        assert (report["sets"], report["deletes"]) == (kept - committed, 3 * GONE)
        final = builtin.attributes_with_keys(HUNTRESS_KEYS)
        assert all(final[d.id]["huntress:firewallStatus"] == "Disabled" for d in devices[:kept])
        assert not any(d.id in final for d in devices[kept:])
        assert len(sync_audit(db, before)) == kept + 3 * GONE  # each change audited once across the crash
        assert written(builtin.get_attributes(devices[0].id))["custom:keep"] is True
        with db.session() as session:
            row = session.scalars(select(IntegrationRow)).one()
        assert (row.last_result, row.lease_owner) == ("ok", None)
    finally:
        fake.stop()
        db.dispose()


def advisory_locks(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
                )
            ).scalar()
            or 0
        )


# ----------------------------------------------------------------------------------------------------
# the SQLite lease in one process: dead owners, live owners, other hosts, the heartbeat
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_integration(tmp_path: Path) -> Iterator[tuple[Database, int]]:
    db = Database(f"sqlite:///{tmp_path / 'lease.db'}")
    upgrade(db.engine)
    Integrations(db, Cipher.from_secret(PASSPHRASE)).add("huntress", {"api_key": "k", "api_secret": "s"}, actor="x")
    with db.session() as session:
        integration_id = session.scalar(select(IntegrationRow.id))
    assert integration_id is not None
    yield db, integration_id
    db.dispose()


def set_lease(db: Database, integration_id: int, owner: str, until: datetime) -> None:
    with db.session() as session:
        session.execute(
            update(IntegrationRow)
            .where(IntegrationRow.id == integration_id)
            .values(lease_owner=owner, lease_until=until)
        )


def test_sqlite_lease_owners(sqlite_integration: tuple[Database, int]) -> None:
    import socket

    db, integration_id = sqlite_integration
    clock = FrozenClock(utcnow())
    host = socket.gethostname()[:40]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # that process has exited

    set_lease(db, integration_id, f"{dead_pid}@{host}#0123456789ab", clock() + LEASE)
    with integration_lock(db, integration_id, clock) as held:
        assert held  # a dead owner on this host: taken over at once

    for owner in (f"{os.getpid()}@{host}#0123456789ab", f"{dead_pid}@another-host#0123456789ab", "legacy-uuid"):
        set_lease(db, integration_id, owner, clock() + LEASE)
        with integration_lock(db, integration_id, clock) as held:
            assert not held, owner  # alive here, or not checkable: wait for the lease
        clock.advance(seconds=LEASE.total_seconds())
        with integration_lock(db, integration_id, clock) as held:
            assert held, owner  # ... which ends by itself


def test_sqlite_lease_heartbeat(sqlite_integration: tuple[Database, int]) -> None:
    db, integration_id = sqlite_integration
    clock = FrozenClock(utcnow())
    lease = timedelta(seconds=0.4)

    def lease_until() -> datetime | None:
        with db.session() as session:
            return session.scalar(select(IntegrationRow.lease_until))

    with integration_lock(db, integration_id, clock, lease=lease) as held:
        assert held
        clock.advance(minutes=10)  # far past the first lease: only a renewal keeps it
        wait_until(lambda: lease_until() == clock() + lease, "the heartbeat to renew the lease", 10)
        with integration_lock(db, integration_id, clock, lease=lease) as other:
            assert not other
    assert lease_until() is None


# ----------------------------------------------------------------------------------------------------
# (c) reminders and expiry notices after a restart
# ----------------------------------------------------------------------------------------------------


def test_reminder_and_expiry_notices_claimed_by_a_killed_worker_are_delivered_once(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "accessbot.yml"
    config.write_text(CONFIG_YAML)
    fake = HeldSlack().start()
    env = child_env(
        DATABASE_URL=db_url,
        ACCESSBOT_CONFIG=str(config),
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_API_URL=fake.base_url,
        ACCESSBOT_SECRET_KEY=PASSPHRASE,
    )
    runtime = bootstrap.build(settings_for(env))
    db = runtime.db
    try:
        builtin = runtime.tailnet
        assert isinstance(builtin, BuiltinTailnet)
        setup = Actor("cli:setup")
        laptop = builtin.add_device(name="rita-laptop", user="req@example.com", actor=setup)
        desktop = builtin.add_device(name="rita-desktop", user="req@example.com", actor=setup)
        now = utcnow()
        # approved in the past: the first grant ends in 5 minutes (its reminder is due), the second in 2 seconds
        remind = grant(runtime, fake, config, laptop, timedelta(hours=1), approved_at=now - timedelta(minutes=55))
        end = grant(runtime, fake, config, desktop, timedelta(minutes=30), approved_at=now - timedelta(seconds=1798))
        ctx = context(runtime, fake, config)
        ctx.notifier.deliver()  # the approval and grant messages, as the app would have sent them
        assert ctx.outbox.pending_count() == 0
        wait_past(ctx.access.get(end).expires_at or now)  # the second grant has run out: its notice is due

        fake.hold_next("chat.postMessage")
        with running(accessbot("worker"), env, tmp_path, tmp_path / "worker-1.log") as worker:
            assert fake.held.wait(30), worker.output()  # the reminder is on its way to Slack ...
            claimed = notifications(db, remind, Notice.REMINDER) + notifications(db, end, Notice.ENDED)
            assert [(n.kind, n.attempts, n.sent_at) for n in claimed] == [("reminder", 1, None), ("ended", 1, None)]
            worker.sigkill()  # ... when the worker dies, with the end-of-access notice claimed as well
        fake.drop_held()
        leases = [n.claimed_until for n in claimed if n.claimed_until is not None]
        assert len(leases) == 2 and max(leases) <= utcnow() + timedelta(seconds=2)  # notification_lease: 2s

        wait_past(max(leases))
        with running(accessbot("worker"), env, tmp_path, tmp_path / "worker-2.log") as worker:
            worker.wait_for("running jobs")
            wait_until(
                lambda: ctx.outbox.pending_count() == 0,
                "the restarted worker to deliver the reminder and the end-of-access notice",
            )
        for request_id, kind in ((remind, Notice.REMINDER), (end, Notice.ENDED)):
            (notification,) = notifications(db, request_id, kind)  # not queued twice
            assert notification.sent_at is not None and notification.attempts == 2  # taken over from the dead worker
        assert notifications(db, end, Notice.REMINDER) == []  # it had already ended when it would have been due
        dm = f"D{REQUESTER}"
        assert len(fake.ok_posts(dm, ":alarm_clock:")) == 1
        assert "rita-laptop" in fake.ok_posts(dm, ":alarm_clock:")[0]["text"]
        assert len(fake.ok_posts(dm, "has ended")) == 1
        assert "rita-desktop" in fake.ok_posts(dm, "has ended")[0]["text"]
        assert ctx.access.get(end).status == RequestStatus.ENDED
        assert request_actions(db, end).count(AccessAudit.EXPIRED) == 1
    finally:
        fake.drop_held()
        fake.stop()
        db.dispose()


def grant(
    runtime: Services, fake: FakeSlackAPI, config: Path, device: Device, duration: timedelta, approved_at: datetime
) -> int:
    """A request for ``device`` submitted and approved at ``approved_at`` (its attribute is written now)."""
    ctx = context(runtime, fake, config, clock=FrozenClock(approved_at))
    request = ctx.access.submit(
        requester_id=REQUESTER,
        profile_id="prod",
        device=device,
        duration=duration,
        approver_ids=[BOB],
        reason="on call",
    )
    granted = ctx.access.approve(request.id, BOB)
    assert granted.status == RequestStatus.GRANTED, granted.last_error
    return request.id
