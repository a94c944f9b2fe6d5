"""Microsoft Intune's own sync behaviour (the contract every vendor meets, Entra tokens included, is in
test_sync_contract.py): Graph throttling waited out, matching by Wi-Fi MAC and stale devices."""

from __future__ import annotations

from datetime import timedelta

from app.core.clock import FrozenClock
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from app.vendors import intune
from app.vendors.integrations import Integrations
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_intune import INTUNE_CLIENT_ID, INTUNE_SECRET, INTUNE_TENANT, FakeIntune, intune_device
from tests.integration.vendor_contract import ADMIN, INTUNE, Mono, attrs, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(INTUNE)


def test_client_waits_out_graph_throttling(mono: Mono) -> None:
    """Against the fake's 429s (Retry-After seconds, then none at all) the client waits and completes the list."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        mono.now += seconds

    for send_retry_after in (True, False):
        slept.clear()
        # a 10 s window: without Retry-After the client's jittered backoff (2, 4, 8 s ... halved at the least) is
        # sure to outlast it within its five attempts; a 20 s one it outlasts only some of the time
        with FakeIntune([intune_device(i) for i in range(7)], rate_limit=2, rate_window=10.0, clock=mono) as served:
            served.send_retry_after = send_retry_after
            client = intune.IntuneClient(
                INTUNE_TENANT,
                INTUNE_CLIENT_ID,
                INTUNE_SECRET,
                login_url=served.url,
                graph_url=served.url,
                sleep=sleep,
                clock=mono,
                page_size=2,
            )
            with client:
                assert len(client.fetch_agents()) == 7
            assert served.rate_limited > 0 and slept
            statuses = [c.status for c in served.api_calls()]
            assert statuses.count(200) == 4 and set(statuses) == {200, 429}


def test_matches_by_wifi_mac_and_stale_devices_write_no_posture(
    runner: SyncRunner, integrations: Integrations, fake: FakeIntune, builtin: BuiltinTailnet, clock: FrozenClock
) -> None:
    """A device without a serial matches by Intune's bare-hex Wi-Fi MAC; a device that has not synced within the
    integration's max_agent_age gets intune:stale instead of its posture."""
    identity = {"serialNumbers": [], "ifaceHardwareAddrs": ["3c:2c:30:00:00:07"]}
    builtin.import_devices(
        [{"id": "701", "nodeId": "nMACIN0701", "name": "mac7.example.ts.net", "postureIdentity": identity}],
        actor=Actor("cli:setup"),
    )
    old = builtin.add_device(name="old", user="o@example.com", serial_numbers=["SER-8"], actor=Actor("cli:setup"))
    seen_now = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    long_ago = (clock() - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fake.set_devices(
        [
            intune_device(7, None, lastSyncDateTime=seen_now, complianceState="conflict"),
            intune_device(8, "SER-8", lastSyncDateTime=long_ago),
        ]
    )
    INTUNE.connect(integrations, fake)
    integrations.set_max_agent_age("intune", timedelta(days=7), actor=ADMIN)
    report = runner.run("intune")
    assert report.result == "ok", report.error
    assert (report.matches_by_serial, report.matches_by_mac, report.stale_matches) == (1, 1, 1)
    assert builtin.get_attributes("701").attributes["intune:complianceState"] == "conflict"
    assert attrs(builtin, old) == {"intune:stale": True}
