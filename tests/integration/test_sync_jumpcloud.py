"""JumpCloud's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): a failure in
the System Insights MAC lookup writes nothing, a multi-tenant admin needs the org id, rate limits are waited out."""

from __future__ import annotations

import pytest

from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Device
from app.vendors.integrations import Integrations
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_jumpcloud import INTERFACES_PATH, SYSTEMS_PATH, FakeJumpCloud, jumpcloud_system
from tests.fakes.vendors import Answer
from tests.integration.vendor_contract import ADMIN, JUMPCLOUD, attrs, jumpcloud_serve, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(JUMPCLOUD)


def test_interface_listing_failing_midway_writes_and_deletes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJumpCloud,
    builtin: BuiltinTailnet,
    devices: list[Device],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The System Insights listing runs beside the systems' paging; its second page failing fails the snapshot
    (a systems page failing: test_sync_contract)."""
    jumpcloud_serve(fake, [jumpcloud_system(i, f"SER-{i}") for i in range(3)])
    JUMPCLOUD.connect(integrations, fake)
    assert runner.run("jumpcloud").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    jumpcloud_serve(fake, [jumpcloud_system(i, f"SER-{i}", active=False) for i in range(7)])
    rows = fake._interface_rows

    def second_page_down(params: dict[str, str]) -> Answer:
        if params.get("skip", "0") != "0":
            return 503, b'{"message": "Service Unavailable"}', {}
        return rows(params)

    monkeypatch.setattr(fake, "_interface_rows", second_page_down)
    client = integrations.client("jumpcloud")
    client.interface_page_size = 2  # several interface pages: the first answers, the second fails
    monkeypatch.setattr(integrations, "client", lambda vendor: client)
    report = runner.run("jumpcloud")
    assert report.result == "error" and "503" in (report.error or "")
    assert INTERFACES_PATH in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("jumpcloud")
    assert integration.paused_until is None and integration.last_report["matches"] == 3


def test_a_multi_tenant_admin_needs_the_org_id(
    runner: SyncRunner, integrations: Integrations, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    with FakeJumpCloud(org_id="5f1e2d3c4b5a697887a6b5c4") as tenant:
        jumpcloud_serve(tenant, [jumpcloud_system(0, "SER-0")])
        JUMPCLOUD.connect(integrations, tenant)
        assert runner.run("jumpcloud").result == "error"
        integrations.update("jumpcloud", {"org_id": "5f1e2d3c4b5a697887a6b5c4"}, actor=ADMIN)
        report = runner.run("jumpcloud")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0])["jumpcloud:present"] is True
        refused = [(c.path, c.status) for c in tenant.calls if c.status == 401]
        answered = [(c.path, c.status) for c in tenant.calls if c.status != 401]
        # refused: the systems' first page, and the interfaces' if that listing (run beside it) started in time
        assert (SYSTEMS_PATH, 401) in refused and set(refused) <= {(SYSTEMS_PATH, 401), (INTERFACES_PATH, 401)}
        assert sorted(answered) == [(SYSTEMS_PATH, 200), (INTERFACES_PATH, 200), (INTERFACES_PATH, 200)]


def test_rate_limited_answers_are_waited_out(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeJumpCloud,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    jumpcloud_serve(fake, [jumpcloud_system(0, "SER-0")])
    JUMPCLOUD.connect(integrations, fake)
    fake.fail_next(429, times=2, retry_after=1)
    report = runner.run("jumpcloud")
    assert report.result == "ok", report.error
    assert [c.status for c in fake.calls][:3] == [429, 429, 200]
    assert attrs(builtin, devices[0])["jumpcloud:present"] is True
