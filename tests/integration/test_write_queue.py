"""``app.db.write_queue``: SQLite writers of every process queue on one kernel lock, taken at a transaction's first
write and given back when it ends — and a thread never waits for itself.

The lock's state is read with a non-blocking ``flock`` on a descriptor of our own (what another process would
see), so no check depends on timing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import Database
from app.db.write_queue import write_lock_path


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/queue.db")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    yield database
    database.dispose()


def queue_is_free(db: Database) -> bool:
    fd = os.open(write_lock_path(db.engine), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor releases a lock taken through it
    return True


def test_the_first_write_takes_the_queue_and_commit_gives_it_back(db: Database) -> None:
    with db.session() as session:
        session.execute(text("SELECT count(*) FROM t")).scalar_one()
        assert queue_is_free(db), "a read does not queue"
        session.execute(text("INSERT INTO t (v) VALUES ('a')"))
        assert not queue_is_free(db)
        session.execute(text("UPDATE t SET v = 'b'"))  # the same transaction: no second acquisition
    assert queue_is_free(db)


def test_a_failed_transaction_gives_the_queue_back(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(text("INSERT INTO t (v) VALUES ('a')"))
        raise RuntimeError("boom")
    assert queue_is_free(db)
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 0


def test_begin_immediate_queues_before_it_takes_sqlites_lock(db: Database) -> None:
    with db.session() as session:
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        assert not queue_is_free(db)
    assert queue_is_free(db)


def test_a_second_writer_waits_in_the_queue_until_the_first_commits(db: Database) -> None:
    entered = threading.Event()
    done = threading.Event()

    def second() -> None:
        entered.set()
        with db.session() as session:
            session.execute(text("INSERT INTO t (v) VALUES ('second')"))
        done.set()

    with db.session() as session:
        session.execute(text("INSERT INTO t (v) VALUES ('first')"))
        worker = threading.Thread(target=second)
        worker.start()
        assert entered.wait(10)
        assert not done.wait(0.3), "the second writer must wait while the first holds the queue"
    worker.join(10)
    assert done.is_set()
    with db.session() as session:
        assert session.execute(text("SELECT v FROM t ORDER BY id")).scalars().all() == ["first", "second"]


def test_a_writer_in_another_process_waits_for_this_one(db: Database, tmp_path: Path) -> None:
    script = (
        "import sys; from sqlalchemy import text; from app.db import Database\n"
        "db = Database(sys.argv[1])\n"
        "with db.session() as s: s.execute(text(\"INSERT INTO t (v) VALUES ('child')\"))\n"
    )
    root = Path(__file__).resolve().parents[2]
    with db.session() as session:
        session.execute(text("INSERT INTO t (v) VALUES ('parent')"))
        child = subprocess.Popen([sys.executable, "-c", script, str(db.engine.url)], cwd=root)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(1.0)  # queued behind this transaction (SQLite's own lock is not even asked for yet)
    assert child.wait(30) == 0
    with db.session() as session:
        assert session.execute(text("SELECT v FROM t ORDER BY id")).scalars().all() == ["parent", "child"]


def test_a_thread_holding_the_queue_does_not_wait_for_itself(db: Database) -> None:
    """A nested write on the same thread falls back to SQLite's own rules (here: after the outer commits it goes
    through; before, SQLite would refuse it): it never blocks forever on its own queue entry."""
    with db.session() as outer:
        outer.execute(text("INSERT INTO t (v) VALUES ('outer')"))
    with db.session() as reader:
        reader.execute(text("SELECT count(*) FROM t")).scalar_one()
        with db.session() as writer:  # the reader holds nothing: the writer queues normally
            writer.execute(text("INSERT INTO t (v) VALUES ('inner')"))
    assert queue_is_free(db)
    with db.session() as holder:
        holder.execute(text("UPDATE t SET v = v"))
        other = db.engine.connect()
        try:
            other.exec_driver_sql("PRAGMA busy_timeout=50")
            with pytest.raises(Exception, match="locked"):
                other.exec_driver_sql("INSERT INTO t (v) VALUES ('nested')")  # SQLite says no; no hang
        finally:
            other.close()
    assert queue_is_free(db)
