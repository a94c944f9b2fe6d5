"""SimpleMDM's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): its per-minute
rate limit is waited out."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.core.clock import FrozenClock
from app.core.crypto import Cipher
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Device
from app.vendors import simplemdm
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import VendorRegistry
from app.vendors.sync import SyncRunner
from tests.fakes.vendor_simplemdm import FakeSimpleMDM, simplemdm_device
from tests.integration.vendor_contract import SIMPLEMDM, sync_fixtures

mono, vendors, fake, integrations, runner, devices = sync_fixtures(SIMPLEMDM)


def test_the_fakes_rate_limit_is_waited_out(
    db: Database, builtin: BuiltinTailnet, clock: FrozenClock, devices: list[Device]
) -> None:
    """Three requests a minute: the fourth page is refused with 429 + Retry-After, waited out, asked again."""
    now = [0.0]

    def sleep(seconds: float) -> None:  # simulated time: the client's waits move the fake's clock
        now[0] += seconds

    def build(values: Any) -> simplemdm.SimpleMDMClient:
        return simplemdm.SimpleMDMClient(values["api_key"], base_url=values["base_url"], sleep=sleep, page_size=2)

    registry = VendorRegistry((dataclasses.replace(simplemdm.SPEC, build=build),))
    integrations = Integrations(db, Cipher.from_secret("another test passphrase"), clock=clock, vendors=registry)
    runner = SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)
    with FakeSimpleMDM(
        [simplemdm_device(i, f"SER-{i}") for i in range(7)], rate_limit_per_minute=3, clock=lambda: now[0]
    ) as limited:
        SIMPLEMDM.connect(integrations, limited)
        report = runner.run("simplemdm")
        assert report.result == "ok", report.error
        assert [(c.params.get("starting_after"), c.status) for c in limited.calls] == [
            (None, 200),
            ("101", 200),
            ("103", 200),
            ("105", 429),
            ("105", 200),
        ]
        assert now[0] == 60.0  # exactly the Retry-After the fake sent
        assert report.matches == 3
