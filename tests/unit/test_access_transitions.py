"""The access state machine's table: every allowed change works once, with its audit, notice and metric; every other
is refused and leaves no trace; of two racing processes exactly one makes a change (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.access import transitions
from app.access.errors import AlreadyDecided
from app.access.transitions import OUTCOMES, TRANSITIONS, Transition, allowed, move, move_or_refuse
from app.core.clock import FrozenClock
from app.core.metrics import Metrics, install
from app.db import Database, audit
from app.db.tables.access import AccessRequestRow, NotificationRow, RequestStatus

S = RequestStatus

ALLOWED = {
    (S.PENDING, S.PENDING),  # a vote that is not yet enough
    (S.PENDING, S.GRANTING),
    (S.PENDING, S.DENIED),
    (S.PENDING, S.EXPIRED),
    (S.FAILED, S.GRANTING),
    (S.GRANTING, S.GRANTED),
    (S.GRANTING, S.FAILED),
    (S.GRANTED, S.GRANTED),  # the expiry reminder
    (S.GRANTED, S.REVOKED),
    (S.GRANTED, S.ENDED),
    (S.PENDING, S.SCHEDULED),  # the deciding approval of a request that starts later
    (S.SCHEDULED, S.GRANTING),  # its start
    (S.SCHEDULED, S.SCHEDULED),  # the "starts soon" reminder
    (S.SCHEDULED, S.REVOKED),  # revoked before its start
    (S.SCHEDULED, S.ENDED),  # its whole window passed unstarted
    (S.PENDING, S.CANCELLED),  # cancelled from the CLI or by the request client that made it
    (S.SCHEDULED, S.CANCELLED),
}
"""The state machine written out a second time, pair by pair, so a change to the table is a deliberate one."""

STEPS = [(t, source) for t in TRANSITIONS for source in sorted(t.sources)]
REFUSED = [(t, status) for t in TRANSITIONS for status in S if status not in t.sources]


def _name(value: object) -> str:
    return value.name if isinstance(value, Transition) else str(value)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    fresh = Metrics(outcomes=OUTCOMES)
    previous = install(fresh)
    yield fresh
    install(previous)


def new_request(db: Database, status: RequestStatus, clock: FrozenClock) -> int:
    with db.session() as session:
        row = AccessRequestRow(
            status=status,
            requester_id="UREQ",
            profile_id="prod",
            attribute="custom:prodAccess",
            value=True,
            approvals_required=1,
            device_id="n1",
            device_name="req-laptop",
            duration_seconds=3600,
            reason="deploy hotfix",
            approver_ids=["UBOB"],
            created_at=clock(),
            timeout_at=clock() + timedelta(hours=1),
        )
        session.add(row)
        session.flush()
        return row.id


def status_of(db: Database, request_id: int) -> str | None:
    with db.session() as session:
        return session.scalar(select(AccessRequestRow.status).where(AccessRequestRow.id == request_id))


def trace(db: Database, request_id: int) -> tuple[list[str], list[str]]:
    """The audit actions and the notification kinds of a request, oldest first."""
    with db.session() as session:
        actions = [e.action for e in audit.query(session) if e.target == f"request/{request_id}"]
        kinds = list(
            session.scalars(
                select(NotificationRow.kind)
                .where(NotificationRow.request_id == request_id)
                .order_by(NotificationRow.id)
            )
        )
    return actions, kinds


def counts(metrics: Metrics) -> dict[str, float]:
    return {outcome: metrics.access_grants.labels(outcome)._value.get() for outcome in OUTCOMES}


def test_the_table_allows_exactly_the_intended_pairs() -> None:
    assert {(a, b) for a in S for b in S if allowed(a, b)} == ALLOWED
    assert {(source, t.target) for t in TRANSITIONS for source in t.sources} == ALLOWED
    for final in (S.DENIED, S.EXPIRED, S.REVOKED, S.ENDED):
        assert not any(allowed(final, b) for b in S)
    scheduled = {"scheduled", "start_missed"}  # scheduled access (app.access.scheduling)
    assert set(OUTCOMES) - scheduled - {"cancelled"} == {
        "granted",
        "failed",
        "denied",
        "revoked",
        "expired",
        "request_expired",
    }
    assert scheduled <= set(OUTCOMES)
    assert set(transitions.STATUS_WORDS) == set(S)


def test_outcome_labels_are_exported_as_zeros_from_the_start(metrics: Metrics) -> None:
    assert counts(metrics) == dict.fromkeys(OUTCOMES, 0.0)
    bare = Metrics().registry  # without the access flow's labels, metrics makes none up
    assert bare.get_sample_value("accessbot_access_grants_total", {"outcome": "granted"}) is None


@pytest.mark.parametrize(("transition", "source"), STEPS, ids=_name)
def test_every_allowed_transition_is_performed_once_with_its_audit_notice_and_metric(
    db: Database, clock: FrozenClock, metrics: Metrics, transition: Transition, source: RequestStatus
) -> None:
    request_id = new_request(db, source, clock)
    with db.session() as session:
        row = move(session, transition, request_id, actor="UBOB", at=clock(), values={"last_error": "x"})
        assert row is not None and row.status == transition.target and row.last_error == "x"
    assert status_of(db, request_id) == transition.target
    actions, kinds = trace(db, request_id)
    assert actions == ([transition.audit] if transition.audit else [])
    assert kinds == ([transition.notice] if transition.notice else [])
    expected = dict.fromkeys(OUTCOMES, 0.0) | ({transition.outcome: 1.0} if transition.outcome else {})
    assert counts(metrics) == expected
    assert metrics.access_requests._value.get() == 0
    if transition.target not in transition.sources:  # done once: the same change again is refused
        with db.session() as session:
            assert move(session, transition, request_id, actor="UBOB", at=clock()) is None
        assert trace(db, request_id) == (actions, kinds)


@pytest.mark.parametrize(("transition", "status"), REFUSED, ids=_name)
def test_every_disallowed_transition_is_refused_and_leaves_no_trace(
    db: Database, clock: FrozenClock, metrics: Metrics, transition: Transition, status: RequestStatus
) -> None:
    request_id = new_request(db, status, clock)
    with db.session() as session:
        assert move(session, transition, request_id, actor="UBOB", at=clock(), values={"last_error": "x"}) is None
    with db.session() as session, pytest.raises(AlreadyDecided, match=transitions.STATUS_WORDS[status]):
        move_or_refuse(session, transition, request_id, actor="UBOB", at=clock())
    assert status_of(db, request_id) == status
    assert trace(db, request_id) == ([], [])
    assert counts(metrics) == dict.fromkeys(OUTCOMES, 0.0)
    with db.session() as session:
        assert session.get(AccessRequestRow, request_id).last_error is None  # type: ignore[union-attr]


def test_a_condition_beyond_the_status_refuses_too(db: Database, clock: FrozenClock) -> None:
    request_id = new_request(db, S.GRANTED, clock)
    once = (AccessRequestRow.reminder_sent_at.is_(None),)
    for expected in (True, False):
        with db.session() as session:
            row = move(
                session,
                transitions.REMIND,
                request_id,
                actor="system",
                at=clock(),
                values={"reminder_sent_at": clock()},
                only_if=once,
            )
            assert (row is not None) is expected
    assert trace(db, request_id) == ([], ["reminder"])


def test_a_change_rolled_back_counts_nothing_and_leaves_no_trace(
    db: Database, clock: FrozenClock, metrics: Metrics
) -> None:
    request_id = new_request(db, S.GRANTING, clock)
    with pytest.raises(RuntimeError), db.session() as session:
        assert move(session, transitions.GRANT, request_id, actor="UBOB", at=clock()) is not None
        raise RuntimeError("the transaction fails after the change")
    assert status_of(db, request_id) == S.GRANTING
    assert trace(db, request_id) == ([], [])
    assert counts(metrics)["granted"] == 0


@pytest.mark.parametrize(
    "transition",
    [t for t in TRANSITIONS if t.target not in t.sources],
    ids=_name,
)
def test_of_two_racing_transitions_exactly_one_wins(
    db: Database, clock: FrozenClock, metrics: Metrics, transition: Transition
) -> None:
    source = sorted(transition.sources)[0]  # a race from any one of them
    request_id = new_request(db, source, clock)
    barrier = threading.Barrier(2)
    won: list[bool] = []
    errors: list[BaseException] = []

    def race(actor: str) -> None:
        try:
            barrier.wait()
            with db.session() as session:
                won.append(move(session, transition, request_id, actor=actor, at=clock()) is not None)
        except BaseException as exc:  # reported below: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(actor,)) for actor in ("UBOB", "UCAROL")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(won) == [False, True]
    assert status_of(db, request_id) == transition.target
    actions, kinds = trace(db, request_id)
    assert actions == ([transition.audit] if transition.audit else [])
    assert kinds == ([transition.notice] if transition.notice else [])
    if transition.outcome:
        assert counts(metrics)[transition.outcome] == 1
