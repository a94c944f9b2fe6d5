"""The sync contract for Kandji (Iru): FakeKandji → KandjiClient → SyncRunner → the built-in tailnet (or custom:)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import kandji
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_kandji import KANDJI_TOKEN, FakeKandji, kandji_device

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


@pytest.fixture
def vendors() -> VendorRegistry:
    """The real Kandji spec with a client that does not sleep between retries and pages by 2."""

    def build(values: Any) -> kandji.KandjiClient:
        return kandji.KandjiClient(values["api_url"], values["api_token"], sleep=_noop, page_size=2)

    return VendorRegistry((dataclasses.replace(kandji.SPEC, build=build),))


@pytest.fixture
def fake() -> Iterator[FakeKandji]:
    with FakeKandji() as served:
        yield served


@pytest.fixture
def integrations(db: Database, clock: FrozenClock, vendors: VendorRegistry) -> Integrations:
    return Integrations(db, Cipher.from_secret("a test passphrase of some length"), clock=clock, vendors=vendors)


@pytest.fixture
def runner(db: Database, builtin: BuiltinTailnet, integrations: Integrations, clock: FrozenClock) -> SyncRunner:
    return SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)


@pytest.fixture
def devices(builtin: BuiltinTailnet) -> list[Device]:
    setup = Actor("cli:setup")
    return [
        builtin.add_device(name=f"host{i}", user=f"u{i}@example.com", serial_numbers=serials, actor=setup)
        for i, serials in enumerate([["C02ZK1ABMD6T"], ["DMPXK2ZZQ1GC"], ["SER-2"], [], ["Default string"]])
    ]


def connect(integrations: Integrations, fake: FakeKandji, token: str = KANDJI_TOKEN) -> None:
    integrations.add("kandji", {"api_url": fake.url, "api_token": token}, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def the_sample() -> list[dict[str, Any]]:
    """The reference's Mac and iPad, a device without a serial, one for no tailnet device, an older duplicate."""
    return [
        kandji_device(0, "C02ZK1ABMD6T", device__name="ana-mbp"),
        kandji_device(
            1, "DMPXK2ZZQ1GC", device__family="iPad", agent_installed=None, agent_version=None, last_checkin_agent=None
        ),
        kandji_device(2, None),
        kandji_device(3, "NOT-IN-TAILNET"),
        kandji_device(4, "c02zk1abmd6t", mdm_enabled=False, last_checkin="2020-01-01T00:00:00.000000+00:00"),
    ]


def test_sync_writes_values_verbatim_and_second_run_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeKandji,
    builtin: BuiltinTailnet,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake)
    report = runner.run("kandji")
    assert report.result == "ok", report.error
    assert report.summary == "2 matches between 3 Tailscale devices with identifiers and 5 Kandji agents"
    assert (report.agents_without_serial, report.duplicate_serials_resolved) == (1, 1)
    assert attrs(builtin, devices[0]) == {"kandji:mdmEnabled": True, "kandji:agentInstalled": True}
    assert attrs(builtin, devices[1]) == {"kandji:mdmEnabled": True}  # no agent on an iPad: unset, not false
    assert attrs(builtin, devices[2]) == {} and attrs(builtin, devices[3]) == {}
    offsets = [c.params["offset"] for c in fake.calls]
    assert offsets == ["0", "2", "4"] and all(c.params["sort_by"] == "device_id" for c in fake.calls)

    before = fake.requests
    again = runner.run("kandji")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert fake.requests > before

    status = status_of(integrations.get("kandji"), clock())
    assert status["headline"].startswith("Last sync just now, 2 matches between 3 Tailscale devices")


def test_changes_are_written_and_vanished_devices_lose_their_attributes(
    runner: SyncRunner, integrations: Integrations, fake: FakeKandji, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(the_sample()[:2])
    connect(integrations, fake)
    assert runner.run("kandji").result == "ok"
    fake.set_agents([kandji_device(0, "C02ZK1ABMD6T", agent_installed=False)])
    report = runner.run("kandji")
    assert (report.sets, report.deletes) == (1, 1)
    assert attrs(builtin, devices[0]) == {"kandji:mdmEnabled": True, "kandji:agentInstalled": False}
    assert attrs(builtin, devices[1]) == {}


def test_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner, integrations: Integrations, fake: FakeKandji, builtin: BuiltinTailnet, devices: list[Device]
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake)
    assert runner.run("kandji").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_agents(
        [kandji_device(i, f"X-{i}") for i in range(6)] + [kandji_device(9, "C02ZK1ABMD6T", mdm_enabled=False)]
    )
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(502, times=10)

    report = runner.run("kandji", progress=fail_after_first_page)
    assert report.result == "error" and "502" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    integration = integrations.get("kandji")
    assert integration.paused_until is None and integration.last_result == "error"


def test_rate_limited_pages_are_waited_out_with_kongs_headers() -> None:
    """The fake's per-second limit (Kong's) answers 429 + Retry-After; the real client waits and finishes."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with FakeKandji(the_sample(), rate_limit_per_second=2, send_retry_after=False) as limited:
        client = kandji.KandjiClient(limited.url, KANDJI_TOKEN, sleep=sleep, page_size=1)
        try:
            agents = client.fetch_agents()
        finally:
            client.close()
        assert len(agents) == 5
        assert limited.rate_limited >= 1  # the fake refused some requests...
        assert any(s >= 1.0 for s in sleeps)  # ...and the client waited RateLimit-Reset (whole seconds)


def test_authentication_failure_pauses_for_24_hours(
    runner: SyncRunner, integrations: Integrations, fake: FakeKandji, clock: FrozenClock
) -> None:
    fake.set_agents(the_sample())
    connect(integrations, fake, token="revoked-token-value")
    report = runner.run("kandji")
    assert report.result == "error" and "refused the credentials" in (report.error or "")
    assert "revoked-token-value" not in (report.error or "")
    assert integrations.get("kandji").paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    integrations.update("kandji", {"api_token": KANDJI_TOKEN}, actor=ADMIN)
    assert runner.due() == ["kandji"]
    assert runner.run("kandji").result == "ok"


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake: FakeKandji,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    """Through the Tailscale adapter (against the built-in API) the values land in custom:kandji_* keys."""
    from app.tailnet.api import make_api
    from app.tailnet.auth import AuthStore
    from app.tailnet.tailscale import TailscaleTailnet
    from app.web.server import make_server

    server = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, key = AuthStore(db, clock=clock).create_api_key(actor=Actor("cli:setup"))
    remote = TailscaleTailnet(
        db, api_url=f"http://127.0.0.1:{server.server_port}", api_key=key, clock=clock, sleep=_noop
    )
    try:
        runner = SyncRunner(db, remote, integrations, mode=NamespaceMode.CUSTOM, clock=clock)
        fake.set_agents(the_sample())
        connect(integrations, fake)
        report = runner.run("kandji")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {"custom:kandji_mdmEnabled": True, "custom:kandji_agentInstalled": True}
        assert attrs(builtin, devices[1]) == {"custom:kandji_mdmEnabled": True}
        assert runner.run("kandji").write_calls == 0
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
