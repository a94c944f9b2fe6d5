"""Processes starting at once on a new database: one migrates, the others wait for it and find the schema current.

Real processes (the CLI's ``main`` behind a start gate, so that they all reach the migration together) on a new
SQLite file, and ``accessbot db upgrade`` processes on a new PostgreSQL database (when
``ACCESSBOT_TEST_DATABASE_URL`` is set). Each child reports on stderr when it runs alembic's upgrade, so the
tests can count the migrations. Then the lock itself: a process waits while the test holds it, a held lock
times out with one clear line, and a current schema never takes the lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from filelock import FileLock
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

import app.db.migrate
from app.core.clock import FrozenClock
from app.db import Database, normalize_url
from app.db.migrate import (
    MIGRATE_ADVISORY_KEY,
    MigrationLockTimeout,
    current_revision,
    ensure_current,
    head_revision,
    migration_lock,
    sqlite_lock_path,
    upgrade,
)
from app.db.session import make_engine
from tests.clitools import cli_environment, failed, invoker
from tests.conftest import PG_URL

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 10
WAIT = 30.0  # seconds the children may take, once at the gate, to finish
IMPORT_WAIT = 60.0  # seconds they may take to start (import accessbot) on a loaded machine
UPGRADING = "parallel-start-test: running alembic upgrade"

# The child: import everything, say it is ready, wait at the gate, then run the real CLI. It marks each call
# of alembic's upgrade on stderr and logs app.db.migrate's "waiting for the lock" line.
CHILD = f"""
import logging, os, sys, time
import alembic.command
from app.cli import main

original = alembic.command.upgrade

def counted(*args, **kwargs):
    print({UPGRADING!r}, file=sys.stderr, flush=True)
    return original(*args, **kwargs)

alembic.command.upgrade = counted
logging.basicConfig(level=logging.WARNING)
logging.getLogger("app.db.migrate").setLevel(logging.INFO)
gate = sys.argv[1]
open(f"{{gate}}.ready.{{os.getpid()}}", "w").close()
deadline = time.monotonic() + {IMPORT_WAIT}
while not os.path.exists(gate) and time.monotonic() < deadline:
    time.sleep(0.005)
sys.argv = ["accessbot", *sys.argv[2:]]
main()
"""


def child_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILSCALE_") and k != "ACCESSBOT_CONFIG"}
    env.update(DATABASE_URL=url, PYTHONPATH=str(REPO))
    return env


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.02)


class Children:
    """Child processes of the CLI started behind one gate; their stderr goes to files (read after they end)."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.gate = workdir / "gate"
        self.procs: list[tuple[subprocess.Popen[str], Path]] = []

    def start(self, count: int, *args: str) -> None:
        for i in range(len(self.procs), len(self.procs) + count):
            err = self.workdir / f"stderr.{i}"
            with err.open("w") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(self.gate), *args],
                    cwd=self.workdir,
                    env=child_env(self.url),
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
            self.procs.append((proc, err))
        wait_for(self._all_ready, f"{len(self.procs)} children to import accessbot", IMPORT_WAIT)

    def _all_ready(self) -> bool:
        return len(list(self.workdir.glob("gate.ready.*"))) == len(self.procs)

    def open_gate(self) -> None:
        self.gate.touch()

    def finish(self) -> list[tuple[int, str, str]]:
        """Wait for every child (at most WAIT seconds in all): (exit code, stdout, stderr) of each."""
        deadline = time.monotonic() + WAIT
        results = []
        for proc, err in self.procs:
            try:
                out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"a child still ran after {WAIT:g} s: {err.read_text()}")
            results.append((proc.returncode, out, err.read_text()))
        return results

    def kill(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[[str], Children]]:
    made: list[Children] = []

    def make(url: str) -> Children:
        made.append(Children(tmp_path, url))
        return made[-1]

    yield make
    for group in made:
        group.kill()


@contextmanager
def new_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server (dropped afterwards); yields its URL."""
    assert PG_URL
    name = f"accessbot_start_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalize_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database nobody has migrated yet: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL: set ACCESSBOT_TEST_DATABASE_URL to run this test against it")
    with new_pg_database() as url:
        yield url


@contextmanager
def holding_migration_lock(engine: Engine) -> Iterator[None]:
    """The migration lock as another process would hold it: the file lock, or the advisory lock (own connection)."""
    if engine.dialect.name == "sqlite":
        with FileLock(sqlite_lock_path(engine)):
            yield
        return
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATE_ADVISORY_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_ADVISORY_KEY})


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def assert_clean(results: list[tuple[int, str, str]]) -> None:
    failures = [(code, err.strip()[-2000:]) for code, _out, err in results if code or "Traceback" in err]
    summary = f"{len(failures)} of {len(results)} processes failed (exit code, end of stderr): {failures[:2]}"
    assert not failures, summary


# -- (a) ten processes on a new SQLite file ---------------------------------------------------------------


def test_ten_processes_start_at_once_on_a_new_sqlite_file(tmp_path: Path, children: Callable[[str], Children]) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    group = children(url)
    group.start(PROCESSES, "devices", "list", "--json")
    group.open_gate()
    results = group.finish()

    assert_clean(results)
    assert [json.loads(out) for _code, out, _err in results] == [{"devices": []}] * PROCESSES
    assert sum(err.count(UPGRADING) for _code, _out, err in results) == 1  # the others found it current
    db = Database(url)
    try:
        assert versions(db.engine) == [head_revision()]
        assert db.engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()
    assert sqlite_lock_path(db.engine).exists()


# -- (b) `accessbot db upgrade` processes on a new PostgreSQL database ------------------------------------


def test_db_upgrade_processes_at_once_on_a_new_postgresql_database(
    tmp_path: Path, children: Callable[[str], Children]
) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL: set ACCESSBOT_TEST_DATABASE_URL to run this test against it")
    with new_pg_database() as url:
        group = children(url)
        group.start(8, "db", "upgrade")
        group.open_gate()
        results = group.finish()

        assert_clean(results)
        head = head_revision()
        reports = sorted(" ".join(out.split()) for _code, out, _err in results)
        # each read the revision under the lock: one found the database empty, the others already at head
        first = f"database at revision {head} (was empty)"
        assert reports == sorted([first] + [f"database at revision {head} (was {head})"] * 7)
        db = Database(url)
        try:
            assert versions(db.engine) == [head]
        finally:
            db.dispose()


def test_threads_of_one_process_upgrade_once(fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = app.db.migrate.command.upgrade

    def counted(*args: object, **kwargs: object) -> None:
        calls.append(threading.current_thread().name)
        original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.db.migrate.command, "upgrade", counted)
    db = Database(fresh_url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        try:
            barrier.wait(timeout=WAIT)
            ensure_current(db.engine, auto_upgrade=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, name=f"start-{i}") for i in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(calls) == 1
        assert versions(db.engine) == [head_revision()]
    finally:
        db.dispose()


# -- (c) the lock serialises: a process waits while it is held ---------------------------------------------


def test_a_starting_process_waits_while_another_holds_the_lock(
    fresh_url: str, tmp_path: Path, children: Callable[[str], Children]
) -> None:
    db = Database(fresh_url)
    # SQLite upgrades itself when a command opens it; `db upgrade` is how PostgreSQL gets upgraded
    args = ("devices", "list", "--json") if db.dialect == "sqlite" else ("db", "upgrade")
    group = children(fresh_url)
    try:
        with holding_migration_lock(db.engine):
            group.start(1, *args)
            group.open_gate()
            err = tmp_path / "stderr.0"
            wait_for(lambda: "waiting for" in err.read_text(), "the child to wait for the migration lock")
            time.sleep(0.5)
            proc, _ = group.procs[0]
            assert proc.poll() is None, err.read_text()  # still waiting
            assert current_revision(db.engine) is None  # and has migrated nothing
            assert UPGRADING not in err.read_text()
        ((code, _out, stderr),) = group.finish()
        assert code == 0, stderr
        assert "Traceback" not in stderr
        assert stderr.count(UPGRADING) == 1
        assert versions(db.engine) == [head_revision()]
    finally:
        db.dispose()


def test_a_held_lock_times_out_with_one_line_naming_it(
    fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    monkeypatch.setattr(app.db.migrate, "MIGRATE_LOCK_TIMEOUT", 0.3)
    db = Database(fresh_url)
    try:
        with holding_migration_lock(db.engine):
            if db.dialect == "sqlite":  # through the CLI: one `error:` line, exit code 2
                cli_environment(monkeypatch, tmp_path, fresh_url)
                run = invoker(monkeypatch, clock)
                result = run("devices", "list")
                assert result.exit_code == 2
                failed(result, "another process holds the migration lock", str(sqlite_lock_path(db.engine)), "0.3 s")
            else:
                with pytest.raises(MigrationLockTimeout) as caught:
                    upgrade(db.engine)
                message = str(caught.value)
                assert "another process holds the migration lock" in message
                assert f"advisory lock {MIGRATE_ADVISORY_KEY}" in message
                assert str(db.engine.url.database) in message
                assert "\n" not in message
        assert current_revision(db.engine) is None
        upgrade(db.engine)  # released: the next one migrates
        assert versions(db.engine) == [head_revision()]
    finally:
        db.dispose()


def test_a_current_schema_starts_without_the_lock(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.db.migrate, "MIGRATE_LOCK_TIMEOUT", 0.01)
    db = Database(db_url)
    try:
        with holding_migration_lock(db.engine):
            ensure_current(db.engine, auto_upgrade=True)  # would time out if it waited for the lock
            ensure_current(db.engine, auto_upgrade=False)
    finally:
        db.dispose()


def test_migration_lock_is_exclusive_and_released(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        lock: AbstractContextManager[None] = migration_lock(db.engine, timeout=0.2)
        with holding_migration_lock(db.engine), pytest.raises(MigrationLockTimeout), lock:
            pass
        inner: AbstractContextManager[None] = migration_lock(db.engine, timeout=0.2)
        with migration_lock(db.engine, timeout=0.2), pytest.raises(MigrationLockTimeout), inner:
            pass
        with migration_lock(db.engine, timeout=0.2):  # released by both
            pass
    finally:
        db.dispose()
