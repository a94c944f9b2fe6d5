"""CrowdStrike Falcon's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): OAuth
tokens renewed before they expire or replaced once when revoked, its rate limit waited out, matching by MAC and
stale hosts."""

from __future__ import annotations

from datetime import timedelta

from app.core.clock import FrozenClock
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.vendors import crowdstrike
from app.vendors.integrations import Integrations
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_crowdstrike import CROWDSTRIKE_CLIENT_ID, CROWDSTRIKE_SECRET, FakeCrowdStrike, falcon_host
from tests.integration.vendor_contract import ADMIN, CROWDSTRIKE, Mono, attrs, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(CROWDSTRIKE)


def test_token_renewed_before_expiry_mid_sync(
    runner: SyncRunner, integrations: Integrations, fake: FakeCrowdStrike, devices: list[Device], mono: Mono
) -> None:
    CROWDSTRIKE.load(fake)
    fake.token_ttl = 120  # the next token lives two minutes on the fake's clock
    CROWDSTRIKE.connect(integrations, fake)

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
    CROWDSTRIKE.load(fake)
    CROWDSTRIKE.connect(integrations, fake)
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
    CROWDSTRIKE.connect(integrations, fake)
    integrations.set_max_agent_age("crowdstrike", timedelta(days=7), actor=ADMIN)
    report = runner.run("crowdstrike")
    assert report.result == "ok", report.error
    assert (report.matches_by_serial, report.matches_by_mac, report.stale_matches) == (1, 1, 1)
    assert builtin.get_attributes("701").attributes == {"falcon:ztaScore": 66}
    assert attrs(builtin, old) == {"falcon:stale": True}
