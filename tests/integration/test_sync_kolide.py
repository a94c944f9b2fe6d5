"""Kolide's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): a key without
device rights (403) pauses too, rate-limited pages are waited out."""

from __future__ import annotations

from datetime import timedelta

from app.core.clock import FrozenClock
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Device
from app.vendors.integrations import Integrations
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_kolide import FakeKolide
from tests.integration.vendor_contract import KOLIDE, attrs, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(KOLIDE)


def test_a_key_without_device_rights_pauses_too(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, clock: FrozenClock
) -> None:
    fake.forbidden = True
    KOLIDE.connect(integrations, fake)
    report = runner.run("kolide")
    assert report.result == "error" and "403" in (report.error or "")
    assert integrations.get("kolide").paused_until == clock() + timedelta(hours=24)


def test_rate_limited_pages_are_waited_out(
    runner: SyncRunner, integrations: Integrations, fake: FakeKolide, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    KOLIDE.load(fake)
    fake.fail_next(429, times=2, retry_after=1)
    KOLIDE.connect(integrations, fake)
    report = runner.run("kolide")
    assert report.result == "ok", report.error
    assert [c.status for c in fake.calls][:3] == [429, 429, 200]
    assert attrs(builtin, devices[1]) == {"kolide:authState": "Will Block"}
