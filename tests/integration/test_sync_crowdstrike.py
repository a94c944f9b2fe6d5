"""CrowdStrike Falcon's own sync behaviour (the contract every vendor meets, OAuth tokens included, is in
test_sync_contract.py): its rate limit waited out, matching by MAC and stale hosts."""

from __future__ import annotations

from datetime import timedelta

from app.core.clock import FrozenClock
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from app.vendors import crowdstrike
from app.vendors.integrations import Integrations
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_crowdstrike import CROWDSTRIKE_CLIENT_ID, CROWDSTRIKE_SECRET, FakeCrowdStrike, falcon_host
from tests.integration.vendor_contract import ADMIN, CROWDSTRIKE, Mono, attrs, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(CROWDSTRIKE)


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
