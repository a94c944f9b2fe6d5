"""Drift reconcile over the built-in tailnet: what is reported (once), what is removed (audited), what closes a
finding, and two reconcilers at once. The Slack side: the admins' DM through the fake Slack Web API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk import WebClient

from app.access.drift import Finding, open_findings
from app.access.outbox import Outbox
from app.access.reconcile import ACTOR_ID, DRIFT_REMOVED, DRIFT_RESTORED, Reconciler, Removal
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.db import Database, audit
from app.db.tables.access import DriftFindingRow, RequestStatus
from app.slack.drift_report import DriftReporter
from app.slack.notify import Notifier
from app.slack.views.blockkit import MESSAGE_BLOCKS_MAX, SECTION_TEXT_MAX
from app.slack.views.drift import drift_report
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import DeviceNotFound, RateLimited
from app.tailnet.models import Actor, Device
from tests.conftest import written
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.unit.access_support import ADMIN, BOB, EMAILS, FlakyTailnet, make_config, submit

PROD = "custom:prodAccess"
PAIR = "custom:pairAccess"
HAND = Actor("cli:someone")


class Recorder:
    """A ``report`` callable that remembers what it was handed (and can say nobody was told)."""

    def __init__(self, told: bool = True) -> None:
        self.calls: list[list[Finding]] = []
        self.told = told
        self.lock = threading.Lock()

    def __call__(self, findings: list[Finding]) -> bool:
        with self.lock:
            self.calls.append(findings)
        return self.told

    @property
    def reported(self) -> list[tuple[str, str]]:
        return [(f.device_id, f.attribute) for call in self.calls for f in call]


@pytest.fixture
def other(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="ops-box", user="ops@example.com", os="linux", actor=Actor("cli:t"))


def reconciler(db: Database, tailnet: Any, config: list[Config], clock: FrozenClock) -> Reconciler:
    return Reconciler(db, tailnet, lambda: config[0], clock=clock)


def events(db: Database, action: str) -> list[audit.AuditEvent]:
    with db.session() as session:
        return audit.query(session, action=action)


def test_a_granted_attribute_is_not_drift(
    service: AccessService,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    service.approve(submit(service, device).id, BOB)
    report = Recorder()
    result = reconciler(db, tailnet, config, clock).run(report=report)
    assert result.findings == [] and result.new == 0 and report.calls == []
    assert result.read == result.devices == 1 and result.complete


def test_a_hand_set_attribute_is_reported_once(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    builtin.set_attribute(other.id, "custom:unrelated", "x", actor=HAND)  # not a profile's key: not drift
    report = Recorder()
    first = reconciler(db, builtin, config, clock).run(report=report)
    assert first.new == 1 and first.reported == 1
    assert report.reported == [(other.id, PROD)]
    [finding] = first.findings
    assert (finding.device_name, finding.value, finding.profile_id) == ("ops-box.example.com", True, "prod")
    assert finding.reported_at == clock()

    clock.advance(hours=1)
    again = reconciler(db, builtin, config, clock).run(report=report)  # a restart: a new reconciler
    assert again.new == 0 and again.reported == 0 and len(report.calls) == 1
    [still] = again.findings
    assert still.first_seen_at == finding.first_seen_at and still.last_seen_at == clock()
    assert written(builtin.get_attributes(other.id)) == {PROD: True, "custom:unrelated": "x"}  # reported, not removed


def test_a_report_nobody_received_is_retried(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    failing = Recorder(told=False)
    assert reconciler(db, builtin, config, clock).run(report=failing).reported == 0
    [finding] = open_findings(db)
    assert finding.reported_at is None

    def broken(findings: list[Finding]) -> bool:
        raise RuntimeError("Slack is down")

    assert reconciler(db, builtin, config, clock).run(report=broken).reported == 0
    working = Recorder()
    assert reconciler(db, builtin, config, clock).run(report=working).reported == 1
    assert working.reported == [(other.id, PROD)]


def test_fix_removes_and_audits(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    builtin.set_attribute(other.id, PAIR, "rw", actor=HAND)
    result = reconciler(db, builtin, config, clock).run(removal=Removal.ALL)
    assert sorted(f.attribute for f in result.removed) == [PAIR, PROD]
    assert result.findings == []
    assert written(builtin.get_attributes(other.id)) == {}
    removed = events(db, DRIFT_REMOVED)
    assert {(e.actor, e.target, e.old_value) for e in removed} == {
        (ACTOR_ID, f"device/{other.id}/attributes/{PROD}", True),
        (ACTOR_ID, f"device/{other.id}/attributes/{PAIR}", "rw"),
    }
    deletes = [e for e in events(db, "Update node attribute") if e.actor == ACTOR_ID]
    assert len(deletes) == 2 and all(e.new_value is None for e in deletes)
    assert all(e.comment and "no active grant of profile" in e.comment for e in deletes)
    with db.session() as session:
        rows = session.query(DriftFindingRow).all()
        assert {(r.resolution, r.resolved_at) for r in rows} == {("removed", clock())}


def test_remove_unexplained_removes_only_that_profiles_attribute(
    builtin: BuiltinTailnet, other: Device, db: Database, clock: FrozenClock
) -> None:
    config = [make_config(remove_unexplained=True)]  # the prod profile only
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    builtin.set_attribute(other.id, PAIR, "rw", actor=HAND)
    report = Recorder()
    result = reconciler(db, builtin, config, clock).run(removal=Removal.PROFILES, report=report)
    assert [f.attribute for f in result.removed] == [PROD]
    assert [f.attribute for f in result.findings] == [PAIR]
    assert sorted(report.reported) == [(other.id, PAIR), (other.id, PROD)]  # the admins hear of the removal too
    [told] = report.calls
    assert {f.attribute: f.resolution for f in told} == {PROD: "removed", PAIR: None}
    assert reconciler(db, builtin, config, clock).run(removal=Removal.PROFILES, report=report).reported == 0
    assert written(builtin.get_attributes(other.id)) == {PAIR: "rw"}


def test_without_removal_nothing_is_removed_even_for_remove_unexplained(
    builtin: BuiltinTailnet, other: Device, db: Database, clock: FrozenClock
) -> None:
    config = [make_config(remove_unexplained=True)]
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    result = reconciler(db, builtin, config, clock).run()
    assert result.removed == [] and len(result.findings) == 1
    assert written(builtin.get_attributes(other.id)) == {PROD: True}


def test_findings_close_when_gone_or_granted_and_reopen_when_back(
    service: AccessService,
    builtin: BuiltinTailnet,
    device: Device,
    other: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    builtin.set_attribute(device.id, PROD, True, actor=HAND)
    report = Recorder()
    run = reconciler(db, tailnet, config, clock).run
    assert run(report=report).new == 2

    builtin.delete_attribute(other.id, PROD, actor=HAND)  # taken away by hand
    service.approve(submit(service, device).id, BOB)  # now a grant explains it
    result = run(report=report)
    assert result.resolved == {"gone": 1, "granted": 1} and result.findings == []

    clock.advance(minutes=10)
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    back = run(report=report)
    assert back.new == 1 and back.reported == 1
    [finding] = back.findings
    assert (finding.device_id, finding.first_seen_at, finding.resolution) == (other.id, clock(), None)
    assert report.reported == [(other.id, PROD), (device.id, PROD), (other.id, PROD)]


def test_a_failed_or_scheduled_request_explains_nothing(
    service: AccessService,
    builtin: BuiltinTailnet,
    device: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    tailnet.fail_with = RuntimeError("tailnet down")
    failed = service.approve(submit(service, device).id, BOB)
    assert failed.status == RequestStatus.FAILED
    builtin.set_attribute(device.id, PROD, True, actor=HAND)
    [finding] = reconciler(db, tailnet, config, clock).run().findings
    assert (finding.device_id, finding.attribute) == (device.id, PROD)


def test_a_device_removed_from_the_tailnet_closes_its_findings(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    run = reconciler(db, builtin, config, clock).run
    assert run().new == 1
    builtin.remove_device(other.id, actor=HAND)
    assert run().resolved == {"gone": 1}


def test_a_profile_removed_from_the_config_closes_its_findings(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PAIR, "rw", actor=HAND)
    run = reconciler(db, builtin, config, clock).run
    assert run().new == 1
    config[0] = config[0].model_copy(update={"profiles": config[0].profiles[:1]})  # the pair profile is gone
    assert run().resolved == {"gone": 1}


def test_two_reconcilers_at_once_report_each_finding_once(
    builtin: BuiltinTailnet, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    boxes = [builtin.add_device(name=f"box-{i}", user="ops@example.com", os="linux", actor=HAND) for i in range(6)]
    for box in boxes:
        builtin.set_attribute(box.id, PROD, True, actor=HAND)
    report = Recorder()
    start = threading.Barrier(2)

    def one() -> int:
        start.wait()
        return reconciler(db, builtin, config, clock).run(report=report).reported

    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda _: one(), range(2)))
    assert sum(counts) == 6
    assert sorted(report.reported) == sorted((b.id, PROD) for b in boxes)
    with db.session() as session:
        assert session.query(DriftFindingRow).count() == 6


class GrantDuringDelete:
    """The built-in tailnet, where a grant of the same attribute is approved just before reconcile's delete lands."""

    def __init__(self, inner: BuiltinTailnet, grant: Any) -> None:
        self.inner = inner
        self.grant = grant

    def delete_attribute(self, *args: Any, **kwargs: Any) -> None:
        self.grant()
        self.inner.delete_attribute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_grant_written_between_the_check_and_the_delete_is_put_back(
    service: AccessService,
    builtin: BuiltinTailnet,
    device: Device,
    db: Database,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    builtin.set_attribute(device.id, PROD, True, actor=HAND)
    request = submit(service, device)
    racing = GrantDuringDelete(builtin, lambda: service.approve(request.id, BOB))
    result = reconciler(db, racing, config, clock).run(removal=Removal.ALL)
    assert result.removed == [] and result.findings == []
    attrs = builtin.get_attributes(device.id)
    assert written(attrs) == {PROD: True}
    assert attrs.expiries == {PROD: clock() + timedelta(hours=1)}  # the grant's own expiry
    [restored] = events(db, DRIFT_RESTORED)
    assert restored.details == {"finding": restored.details["finding"], "request": request.id}
    with db.session() as session:
        assert session.query(DriftFindingRow.resolution).scalar() == "granted"


class PerDevice:
    """The built-in tailnet without its bulk read: one ``get_attributes`` per device, as through the Tailscale API;
    ``refuse`` names devices whose read fails."""

    def __init__(self, inner: BuiltinTailnet) -> None:
        self.inner = inner
        self.reads: list[str] = []
        self.refuse: set[str] = set()
        self.vanished: set[str] = set()

    def list_devices(self) -> list[Device]:
        return self.inner.list_devices()

    def get_attributes(self, device_id: str) -> Any:
        self.reads.append(device_id)
        if device_id in self.refuse:
            raise RateLimited("Tailscale API answered 429 Too Many Requests")
        if device_id in self.vanished:
            raise DeviceNotFound(f"device {device_id} not found")
        return self.inner.get_attributes(device_id)

    def delete_attribute(self, *args: Any, **kwargs: Any) -> None:
        self.inner.delete_attribute(*args, **kwargs)


def test_per_device_reads_are_bounded_paced_and_resume(
    builtin: BuiltinTailnet, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    boxes = sorted(
        (builtin.add_device(name=f"box-{i}", user="ops@example.com", os="linux", actor=HAND) for i in range(5)),
        key=lambda d: d.id,
    )
    builtin.set_attribute(boxes[4].id, PROD, True, actor=HAND)
    tailnet = PerDevice(builtin)
    pauses: list[float] = []
    rec = Reconciler(db, tailnet, lambda: config[0], clock=clock, max_reads=3, pace=0.5, sleep=pauses.append)
    first = rec.run()
    assert tailnet.reads == [b.id for b in boxes[:3]] and pauses == [0.5, 0.5]
    assert (first.read, first.devices, first.complete, first.findings) == (3, 5, False, [])
    second = rec.run()
    assert tailnet.reads[3:] == [boxes[3].id, boxes[4].id, boxes[0].id]  # goes on where it stopped, then wraps
    assert [f.device_id for f in second.findings] == [boxes[4].id]


def test_a_device_that_cannot_be_read_is_reported_and_its_finding_kept(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    tailnet = PerDevice(builtin)
    rec = Reconciler(db, tailnet, lambda: config[0], clock=clock)
    assert rec.run().new == 1
    tailnet.refuse.add(other.id)
    result = rec.run()
    assert not result.complete
    assert [(u.device_name, u.error) for u in result.unreadable] == [
        ("ops-box.example.com", "Tailscale API answered 429 Too Many Requests")
    ]
    assert [f.device_id for f in result.findings] == [other.id]  # not read: not taken for gone
    assert result.resolved == {}


def test_a_device_gone_between_the_listing_and_its_read_closes_its_findings(
    builtin: BuiltinTailnet, other: Device, db: Database, config: list[Config], clock: FrozenClock
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    tailnet = PerDevice(builtin)
    rec = Reconciler(db, tailnet, lambda: config[0], clock=clock)
    assert rec.run().new == 1
    tailnet.vanished.add(other.id)
    result = rec.run()
    assert result.resolved == {"gone": 1} and result.findings == [] and result.complete


# -- the admins' DM ----------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=DEFAULT_TOKEN) as api:
        for user_id, email in EMAILS.items():
            api.add_user(user_id, email, email.split("@")[0])
        yield api


def drift_reporter(fake: FakeSlackAPI, db: Database, service: AccessService, config: list[Config]) -> DriftReporter:
    client = WebClient(token=DEFAULT_TOKEN, base_url=fake.base_url)
    return DriftReporter(client, Notifier(client, Outbox(db), service), lambda: config[0])


def admin_dms(fake: FakeSlackAPI) -> list[str]:
    return [
        str(c.params.get("text", ""))
        for c in fake.calls("chat.postMessage")
        if c.ok and c.response.get("channel") == f"D{ADMIN}"
    ]


def test_admins_are_told_once_by_dm(
    fake: FakeSlackAPI,
    service: AccessService,
    builtin: BuiltinTailnet,
    other: Device,
    db: Database,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    reporter = drift_reporter(fake, db, service, config)
    fake.fail_next("chat.postMessage", "internal_error")
    assert reconciler(db, builtin, config, clock).run(report=reporter).reported == 0  # released for a retry
    assert admin_dms(fake) == []
    assert reconciler(db, builtin, config, clock).run(report=reporter).reported == 1
    assert reconciler(db, builtin, config, clock).run(report=reporter).reported == 0
    [text] = admin_dms(fake)
    assert "1 device attribute held without an active grant" in text
    [post] = [c for c in fake.calls("chat.postMessage") if c.ok]
    blocks = json.dumps(post.params.get("blocks"))
    assert "ops-box" in blocks and PROD in blocks and "Production" in blocks and "accessbot reconcile --fix" in blocks


def test_no_admin_configured_keeps_findings_unreported(
    fake: FakeSlackAPI,
    service: AccessService,
    builtin: BuiltinTailnet,
    other: Device,
    db: Database,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    config[0] = config[0].model_copy(update={"admins": ()})  # the service's config too: one config source
    builtin.set_attribute(other.id, PROD, True, actor=HAND)
    reporter = drift_reporter(fake, db, service, config)
    assert reconciler(db, builtin, config, clock).run(report=reporter).reported == 0
    assert [f.reported_at for f in open_findings(db)] == [None]
    assert fake.calls("chat.postMessage") == []


def test_the_report_says_which_were_removed(clock: FrozenClock) -> None:
    kept = Finding(1, "1", "box-1", PROD, True, "prod", clock(), clock(), None, None, None)
    gone = Finding(2, "2", "box-2", PROD, True, "prod", clock(), clock(), None, clock(), "removed")
    text, blocks = drift_report([kept, gone], lambda _: "Production")
    assert text.startswith("accessbot found 2 device attributes held without an active grant; 1 of them removed")
    shown = json.dumps(blocks)
    assert shown.count("*removed* (audited)") == 1 and "What to do" in shown
    _, only_removed = drift_report([gone], lambda _: "Production")
    assert "What to do" not in json.dumps(only_removed)


def test_the_report_fits_one_message_whatever_the_count(clock: FrozenClock) -> None:
    findings = [
        Finding(i, str(i), "d" * 300, PROD, "v" * 200, "prod", clock(), clock(), None, None, None) for i in range(400)
    ]
    text, blocks = drift_report(findings, lambda _: "L" * 500)
    assert len(blocks) <= MESSAGE_BLOCKS_MAX
    assert all(len(b["text"]["text"]) <= SECTION_TEXT_MAX for b in blocks if b["type"] == "section")
    assert "400 device attributes" in text and "more findings" in json.dumps(blocks)


def test_findings_seen_at_once_are_reported_by_device_name_then_key(
    builtin: BuiltinTailnet,
    device: Device,
    other: Device,
    db: Database,
    tailnet: FlakyTailnet,
    config: list[Config],
    clock: FrozenClock,
) -> None:
    """Not in the order the tailnet lists values (the built-in store lists them by device id)."""
    zulu = builtin.add_device(name="zulu-box", user="z@example.com", os="linux", actor=Actor("cli:t"))
    for target in (zulu, device, other):
        builtin.set_attribute(target.id, PROD, True, actor=HAND)
    report = Recorder()
    assert reconciler(db, tailnet, config, clock).run(report=report).new == 3
    assert report.reported == [(other.id, PROD), (device.id, PROD), (zulu.id, PROD)]  # ops-box, req-laptop, zulu-box
