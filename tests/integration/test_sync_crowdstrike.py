"""The sync contract for CrowdStrike Falcon: FakeCrowdStrike → CrowdStrikeClient → SyncRunner → the built-in tailnet
(or ``custom:`` keys through the Tailscale adapter)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import crowdstrike
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.status import status_of
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_crowdstrike import (
    CROWDSTRIKE_CLIENT_ID,
    CROWDSTRIKE_SECRET,
    FakeCrowdStrike,
    falcon_host,
)

ADMIN = "cli:admin"


def _noop(_seconds: float) -> None:
    return None


class Mono:
    """Monotonic seconds shared by the client (token lifetimes) and the fake (token expiry)."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mono() -> Mono:
    return Mono()


@pytest.fixture
def vendors(mono: Mono) -> VendorRegistry:
    """The real CrowdStrike spec with a client that does not sleep and pages by 2."""

    def build(values: Any) -> crowdstrike.CrowdStrikeClient:
        return crowdstrike.CrowdStrikeClient(
            values["client_id"],
            values["client_secret"],
            base_url=values["base_url"],
            sleep=_noop,
            clock=mono,
            page_size=2,
        )

    return VendorRegistry((dataclasses.replace(crowdstrike.SPEC, build=build),))


@pytest.fixture
def fake(mono: Mono) -> Iterator[FakeCrowdStrike]:
    with FakeCrowdStrike(clock=mono) as served:
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
        for i, serials in enumerate([["C02ZK1ABMD6T"], ["PF3ABC12"], ["SER-2"], [], ["To Be Filled By O.E.M."]])
    ]


def connect(integrations: Integrations, fake: FakeCrowdStrike, secret: str = CROWDSTRIKE_SECRET) -> None:
    values = {"client_id": CROWDSTRIKE_CLIENT_ID, "client_secret": secret, "base_url": fake.url}
    integrations.add("crowdstrike", values, actor=ADMIN)


def attrs(builtin: BuiltinTailnet, device: Device) -> dict[str, Any]:
    return builtin.get_attributes(device.id).attributes


def sample(fake: FakeCrowdStrike) -> list[dict[str, Any]]:
    """The reference's two hosts, one without a serial, one with no tailnet device, one without an assessment."""
    hosts = [
        falcon_host(0, "C02ZK1ABMD6T", hostname="ana-mbp", platform_name="Mac"),
        falcon_host(1, "PF3ABC12", hostname="BO-LAPTOP"),
        falcon_host(2, None),
        falcon_host(3, "SER-9"),
        falcon_host(4, "SER-2"),
    ]
    ids = [h["device_id"] for h in hosts]
    fake.set_hosts(hosts, {ids[0]: 87, ids[1]: 54, ids[2]: 70, ids[3]: 12})
    return hosts


def test_values_verbatim_and_second_sync_writes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeCrowdStrike,
    builtin: BuiltinTailnet,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    sample(fake)
    connect(integrations, fake)
    report = runner.run("crowdstrike")
    assert report.result == "ok", report.error
    assert report.summary == "3 matches between 3 Tailscale devices with identifiers and 5 CrowdStrike agents"
    assert report.agents_without_serial == 1
    assert attrs(builtin, devices[0]) == {"falcon:ztaScore": 87}
    assert attrs(builtin, devices[1]) == {"falcon:ztaScore": 54}
    assert attrs(builtin, devices[2]) == {}  # matched, but no assessment: no score is written (not 0)
    assert attrs(builtin, devices[3]) == {} and attrs(builtin, devices[4]) == {}
    before = len(fake.api_calls())
    again = runner.run("crowdstrike")
    assert (again.result, again.sets, again.deletes, again.write_calls) == ("ok", 0, 0, 0)
    assert len(fake.api_calls()) > before
    assert fake.tokens_issued == 2  # one per sync (each builds its client); every request of a sync reused it
    status = status_of(integrations.get("crowdstrike"), clock())
    assert status["headline"].startswith("Last sync just now, 3 matches between 3 Tailscale devices")


def test_token_renewed_before_expiry_mid_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeCrowdStrike, devices: list[Device], mono: Mono
) -> None:
    sample(fake)
    fake.token_ttl = 120  # the next token lives two minutes on the fake's clock
    connect(integrations, fake)

    def time_passes(stage: str, done: int, total: int | None) -> None:
        if stage == "agents":
            mono.now += 95  # 25 s left after the first page: inside the renewal margin, not yet expired

    assert runner.run("crowdstrike", progress=time_passes).result == "ok"
    assert fake.tokens_issued >= 2
    assert all(c.status != 401 for c in fake.api_calls())  # renewed before it ran out, never refused


def test_token_revoked_mid_sync_is_replaced_once(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeCrowdStrike,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    sample(fake)
    connect(integrations, fake)
    revoked = False

    def revoke(stage: str, done: int, total: int | None) -> None:
        nonlocal revoked
        if stage == "agents" and not revoked:
            revoked = True
            fake.expire_tokens()

    report = runner.run("crowdstrike", progress=revoke)
    assert report.result == "ok", report.error
    assert [c.status for c in fake.api_calls()].count(401) == 1
    assert fake.tokens_issued == 2
    assert attrs(builtin, devices[1]) == {"falcon:ztaScore": 54}


def test_score_change_and_removal(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeCrowdStrike,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    hosts = sample(fake)
    connect(integrations, fake)
    runner.run("crowdstrike")
    fake.set_hosts(hosts[:2], {hosts[0]["device_id"]: 91})  # host 1 lost its assessment
    report = runner.run("crowdstrike")
    assert (report.sets, report.deletes) == (1, 1)
    assert attrs(builtin, devices[0]) == {"falcon:ztaScore": 91}
    assert attrs(builtin, devices[1]) == {}


def test_failure_mid_paging_writes_and_deletes_nothing(
    runner: SyncRunner,
    integrations: Integrations,
    fake: FakeCrowdStrike,
    builtin: BuiltinTailnet,
    devices: list[Device],
) -> None:
    hosts = sample(fake)
    connect(integrations, fake)
    assert runner.run("crowdstrike").result == "ok"
    before = [attrs(builtin, d) for d in devices]
    fake.set_hosts(hosts, {})  # every score would go
    failing = False

    def fail_after_first_page(stage: str, done: int, total: int | None) -> None:
        nonlocal failing
        if stage == "agents" and not failing:
            failing = True
            fake.fail_next(503, times=20)

    report = runner.run("crowdstrike", progress=fail_after_first_page)
    assert report.result == "error" and "503" in (report.error or "")
    assert [attrs(builtin, d) for d in devices] == before
    assert integrations.get("crowdstrike").paused_until is None


def test_auth_failure_pauses_24_hours(
    runner: SyncRunner, integrations: Integrations, fake: FakeCrowdStrike, clock: FrozenClock
) -> None:
    connect(integrations, fake, secret="wrong-secret-value")
    report = runner.run("crowdstrike")
    assert report.result == "error" and "refused" in (report.error or "")
    assert "wrong-secret-value" not in (report.error or "")
    assert integrations.get("crowdstrike").paused_until == clock() + timedelta(hours=24)
    assert runner.due() == []
    integrations.update("crowdstrike", {"client_secret": CROWDSTRIKE_SECRET}, actor=ADMIN)
    assert runner.due() == ["crowdstrike"]
    assert runner.run("crowdstrike").result == "ok"


def test_custom_mode_against_a_tailscale_api(
    db: Database,
    builtin: BuiltinTailnet,
    integrations: Integrations,
    fake: FakeCrowdStrike,
    devices: list[Device],
    clock: FrozenClock,
) -> None:
    """On a real tailnet (the Tailscale adapter against the built-in API) the score goes to custom:falcon_ztaScore."""
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
        sample(fake)
        connect(integrations, fake)
        report = runner.run("crowdstrike")
        assert report.result == "ok", report.error
        assert attrs(builtin, devices[0]) == {"custom:falcon_ztaScore": 87}
        assert attrs(builtin, devices[1]) == {"custom:falcon_ztaScore": 54}
        assert runner.run("crowdstrike").write_calls == 0
    finally:
        remote.close()
        server.shutdown()
        server.server_close()


def test_client_waits_out_the_rate_limit(mono: Mono) -> None:
    """Against the fake's 429s (X-RateLimit-RetryAfter epoch seconds only) the client waits and completes."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        mono.now += seconds

    hosts = [falcon_host(i) for i in range(5)]
    with FakeCrowdStrike(hosts, rate_limit=4, clock=mono) as served:
        client = crowdstrike.CrowdStrikeClient(
            CROWDSTRIKE_CLIENT_ID, CROWDSTRIKE_SECRET, base_url=served.url, sleep=sleep, clock=mono, page_size=2
        )
        with client:
            agents = client.fetch_agents()
        assert [a.attributes for a in agents] == [{"falcon:ztaScore": 87}] * 5
        assert served.rate_limited > 0 and slept and all(0 < s <= 61 for s in slept)


def test_matches_by_mac_and_stale_hosts_write_no_score(
    runner: SyncRunner, integrations: Integrations, fake: FakeCrowdStrike, builtin: BuiltinTailnet, clock: FrozenClock
) -> None:
    """A device without a serial matches its host by MAC (Falcon's dashed spelling); a host not seen within the
    integration's max_agent_age gets falcon:stale instead of a score."""
    identity = {"serialNumbers": [], "ifaceHardwareAddrs": ["3c:2c:30:00:00:07"]}
    builtin.import_devices(
        [{"id": "701", "nodeId": "nMACCS0701", "name": "mac7.example.ts.net", "postureIdentity": identity}],
        actor=Actor("cli:setup"),
    )
    old = builtin.add_device(name="old", user="o@example.com", serial_numbers=["SER-8"], actor=Actor("cli:setup"))
    seen_now = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    long_ago = (clock() - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hosts = [falcon_host(7, None, last_seen=seen_now), falcon_host(8, "SER-8", last_seen=long_ago)]
    fake.set_hosts(hosts, {hosts[0]["device_id"]: 66, hosts[1]["device_id"]: 99})
    connect(integrations, fake)
    integrations.set_max_agent_age("crowdstrike", timedelta(days=7), actor=ADMIN)
    report = runner.run("crowdstrike")
    assert report.result == "ok", report.error
    assert (report.matches_by_serial, report.matches_by_mac, report.stale_matches) == (1, 1, 1)
    assert builtin.get_attributes("701").attributes == {"falcon:ztaScore": 66}
    assert attrs(builtin, old) == {"falcon:stale": True}
