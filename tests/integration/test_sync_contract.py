"""The sync contract every vendor meets, run against each vendor's loopback fake (``vendor_contract.HARNESSES``):
values verbatim and the status summary, a second sync writes nothing, a change writes only the difference, a
failure mid-paging writes and deletes nothing, refused credentials pause the integration for 24 h until they
change, and on a real tailnet (the Tailscale adapter) the values go to ``custom:`` keys; OAuth vendors renew their
token before it expires and replace a revoked one once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database, audit
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.integration.vendor_contract import HARNESSES, Harness, Mono, attrs, tailscale_remote


@pytest.fixture(params=HARNESSES, ids=[h.vendor for h in HARNESSES])
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.param


@pytest.fixture
def mono() -> Mono:
    return Mono()


@pytest.fixture
def fake(harness: Harness, mono: Mono) -> Iterator[Any]:
    with harness.open_fake(mono) as served:
        yield served


@pytest.fixture
def integrations(db: Database, clock: FrozenClock, harness: Harness, mono: Mono) -> Integrations:
    cipher = Cipher.from_secret("a test passphrase of some length")
    return Integrations(db, cipher, clock=clock, vendors=harness.registry(mono))


@pytest.fixture
def runner(db: Database, builtin: BuiltinTailnet, integrations: Integrations, clock: FrozenClock) -> SyncRunner:
    return SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)


@pytest.fixture
def devices(builtin: BuiltinTailnet, harness: Harness) -> list[Device]:
    return harness.add_devices(builtin)


def written(builtin: BuiltinTailnet, devices: list[Device]) -> list[dict[str, Any]]:
    return [attrs(builtin, d) for d in devices]


def test_values_verbatim_summary_and_a_second_sync_writes_nothing(
    harness: Harness,
    runner: SyncRunner,
    integrations: Integrations,
    fake: Any,
    builtin: BuiltinTailnet,
    devices: list[Device],
    db: Database,
    clock: FrozenClock,
) -> None:
    harness.load(fake)
    harness.connect(integrations, fake)
    report = runner.run(harness.vendor)
    assert report.result == "ok", report.error
    assert report.summary == harness.summary
    assert report.agents_without_serial == 1
    assert written(builtin, devices) == [dict(harness.expected.get(i, {})) for i in range(len(devices))]
    harness.check_fetch(fake)
    with db.session() as s:
        actors = {e.actor for e in audit.query(s, action="Update node attribute")}
    assert actors == {f"system:sync:{harness.vendor}"}

    before = fake.requests
    again = runner.run(harness.vendor)
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert fake.requests > before  # it did ask the vendor again
    harness.check_second(fake, before)
    status = status_of(integrations.get(harness.vendor), clock())
    matches = harness.summary.split(" matches ")[0]
    assert status["headline"].startswith(f"Last sync just now, {matches} matches between 3 Tailscale devices")


def test_a_change_writes_the_difference_and_other_attributes_stay(
    harness: Harness, runner: SyncRunner, integrations: Integrations, fake: Any, builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:  # fmt: skip
    harness.load(fake)
    harness.connect(integrations, fake)
    assert runner.run(harness.vendor).result == "ok"
    builtin.set_attribute(devices[1].id, "custom:keep", True, actor=Actor("cli:x"))
    harness.change(fake)
    report = runner.run(harness.vendor)
    assert report.result == "ok", report.error
    assert (report.sets, report.deletes) == harness.changed
    for index, expected in harness.after_change.items():
        assert attrs(builtin, devices[index]) == {**expected, **({"custom:keep": True} if index == 1 else {})}


def test_a_failure_mid_paging_writes_and_deletes_nothing(
    harness: Harness, runner: SyncRunner, integrations: Integrations, fake: Any, builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:  # fmt: skip
    harness.load(fake)
    harness.connect(integrations, fake)
    first = runner.run(harness.vendor)
    assert first.result == "ok"
    before = written(builtin, devices)
    harness.load_many(fake)
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(harness.failure_status, times=20)

    report = runner.run(harness.vendor, progress=fail_after_first_page)
    assert failing and report.result == "error" and str(harness.failure_status) in (report.error or "")
    assert harness.failure_text in (report.error or "")
    assert written(builtin, devices) == before
    integration = integrations.get(harness.vendor)
    assert integration.paused_until is None and integration.last_result == "error"
    assert integration.last_report["matches"] == first.matches


def test_refused_credentials_pause_for_24_hours_until_they_change(
    harness: Harness, runner: SyncRunner, integrations: Integrations, fake: Any, clock: FrozenClock
) -> None:
    harness.load(fake)
    harness.connect(integrations, fake, **harness.refused)
    report = runner.run(harness.vendor)
    assert report.result == "error"
    for text in harness.refused_texts:
        assert text in (report.error or "")
    for secret in harness.refused.values():
        assert secret not in (report.error or "")
    harness.check_refusal(fake)
    assert integrations.get(harness.vendor).paused_until == clock() + timedelta(hours=24)
    clock.advance(hours=23)
    assert runner.due() == []
    integrations.update(harness.vendor, dict(harness.fixed), actor="cli:admin")
    assert runner.due() == [harness.vendor]
    assert runner.run(harness.vendor).result == "ok"


def test_custom_mode_against_a_tailscale_api(
    harness: Harness, db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: Any,
    devices: list[Device], clock: FrozenClock,
) -> None:  # fmt: skip
    """On a real tailnet (the Tailscale adapter against the built-in API) values go to custom: keys, diffed by the
    sync's own state."""
    with tailscale_remote(db, builtin, clock) as remote:
        runner = SyncRunner(db, remote, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
        harness.load(fake)
        harness.connect(integrations, fake)
        report = runner.run(harness.vendor)
        assert report.result == "ok", report.error
        for index, expected in harness.custom.items():
            assert attrs(builtin, devices[index]) == expected
        assert runner.run(harness.vendor).write_calls == 0
        harness.change(fake)
        third = runner.run(harness.vendor)
        assert (third.sets, third.deletes) == harness.changed
        for index, expected in harness.after_change.items():
            if not expected:  # what the vendor no longer reports is gone from custom: keys too
                assert not [
                    k for k in attrs(builtin, devices[index]) if k.startswith(f"custom:{harness.spec.namespace}")
                ]


def test_custom_mode_on_the_builtin_store(
    harness: Harness, db: Database, builtin: BuiltinTailnet, integrations: Integrations, fake: Any,
    devices: list[Device], clock: FrozenClock,
) -> None:  # fmt: skip
    """NamespaceMode.CUSTOM on the built-in tailnet writes the same custom: keys as on a real one."""
    runner = SyncRunner(db, builtin, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
    harness.load(fake)
    harness.connect(integrations, fake)
    assert runner.run(harness.vendor).result == "ok"
    for index, expected in harness.custom.items():
        assert attrs(builtin, devices[index]) == expected
    assert all(key.startswith("custom:") for device in devices for key in attrs(builtin, device))
    assert runner.run(harness.vendor).write_calls == 0


# -- vendors whose clients get OAuth tokens from a loopback token endpoint (tests/fakes/oauth_vendor.py) ----------

OAUTH = [h for h in HARNESSES if h.vendor in ("crowdstrike", "intune")]


@pytest.mark.parametrize("harness", OAUTH, ids=[h.vendor for h in OAUTH])
def test_token_renewed_before_expiry_mid_sync(
    harness: Harness, runner: SyncRunner, integrations: Integrations, fake: Any, devices: list[Device], mono: Mono
) -> None:
    harness.load(fake)
    fake.token_ttl = 120  # the next token lives two minutes on the fake's clock
    harness.connect(integrations, fake)

    def time_passes(stage: str, done: int, total: int | None) -> None:
        if stage == "agents":
            mono.now += 95  # 25 s left after the first page: inside the renewal margin, not yet expired

    assert runner.run(harness.vendor, progress=time_passes).result == "ok"
    assert fake.tokens_issued >= 2
    assert all(c.status != 401 for c in fake.api_calls())  # renewed before it ran out, never refused


@pytest.mark.parametrize("harness", OAUTH, ids=[h.vendor for h in OAUTH])
def test_token_revoked_mid_sync_is_replaced_once(
    harness: Harness, runner: SyncRunner, integrations: Integrations, fake: Any, devices: list[Device]
) -> None:
    harness.load(fake)
    harness.connect(integrations, fake)
    revoked = False

    def revoke(stage: str, done: int, total: int | None) -> None:
        nonlocal revoked
        if stage == "agents" and not revoked:
            revoked = True
            fake.expire_tokens()

    report = runner.run(harness.vendor, progress=revoke)
    assert report.result == "ok", report.error
    assert [c.status for c in fake.api_calls()].count(401) == 1
    assert fake.tokens_issued == 2
