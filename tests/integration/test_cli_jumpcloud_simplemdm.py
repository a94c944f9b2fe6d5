"""``accessbot integrations add jumpcloud|simplemdm``: the vendors' own fields, secrets from the environment or
standard input, the credentials checked with one page against the loopback fakes before anything is stored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.core.clock import FrozenClock
from app.vendors import jumpcloud, simplemdm
from app.vendors.registry import VendorRegistry
from tests.clitools import Run, cli_environment, failed, invoker, ok
from tests.conftest import PG_URL
from tests.fakes.vendor_jumpcloud import JUMPCLOUD_KEY, FakeJumpCloud, jumpcloud_interfaces, jumpcloud_system
from tests.fakes.vendor_simplemdm import SIMPLEMDM_KEY, FakeSimpleMDM, simplemdm_device

PASSPHRASE = "jumpcloud simplemdm cli tests passphrase"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    for var in list(os.environ):
        if var.startswith(("ACCESSBOT_JUMPCLOUD_", "ACCESSBOT_SIMPLEMDM_")):
            monkeypatch.delenv(var)
    if PG_URL:
        monkeypatch.setenv("ACCESSBOT_SECRET_KEY", PASSPHRASE)
    else:
        monkeypatch.delenv("ACCESSBOT_SECRET_KEY", raising=False)
    return invoker(monkeypatch, clock, VendorRegistry((jumpcloud.SPEC, simplemdm.SPEC)))


def listed(run: Run) -> dict[str, dict[str, object]]:
    return {i["vendor"]: i for i in json.loads(ok(run("integrations", "list", "--json")))}


def test_add_jumpcloud_with_the_key_from_the_environment_and_an_org_id(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeJumpCloud([jumpcloud_system(0)], jumpcloud_interfaces(0), org_id="org-7") as fake:
        monkeypatch.setenv("ACCESSBOT_JUMPCLOUD_API_KEY", JUMPCLOUD_KEY)
        out = ok(run("integrations", "add", "jumpcloud", "--set", "org_id=org-7", "--base-url", fake.url))
        assert [(c.path, c.params.get("limit"), c.status) for c in fake.calls] == [("/api/systems", "1", 200)]
    assert "JumpCloud accepted the credentials (agents are listed)" in out
    stored = listed(run)["jumpcloud"]
    assert JUMPCLOUD_KEY not in json.dumps(stored)


def test_add_simplemdm_reads_the_secret_from_standard_input(run: Run) -> None:
    with FakeSimpleMDM([simplemdm_device(0)]) as fake:
        out = ok(run("integrations", "add", "simplemdm", "--base-url", fake.url, input=f"{SIMPLEMDM_KEY}\n"))
        assert [c.params for c in fake.calls] == [{"limit": "1"}]
    assert "SimpleMDM accepted the credentials (agents are listed)" in out
    assert SIMPLEMDM_KEY not in json.dumps(listed(run)["simplemdm"])


@pytest.mark.parametrize("vendor", ["jumpcloud", "simplemdm"])
def test_a_refused_key_is_one_line_and_nothing_is_stored(run: Run, vendor: str) -> None:
    fake = FakeJumpCloud() if vendor == "jumpcloud" else FakeSimpleMDM()
    with fake:
        line = failed(
            run("integrations", "add", vendor, "--api-key", "wrong-key-123", "--base-url", fake.url),
            "refused the credentials",
            "HTTP 401",
        )
    assert "wrong-key-123" not in line and "nothing stored" in line
    assert listed(run) == {}


def test_a_bad_mac_lookup_setting_is_one_line(run: Run) -> None:
    with FakeJumpCloud() as fake:
        failed(
            run(
                "integrations",
                "add",
                "jumpcloud",
                "--api-key",
                JUMPCLOUD_KEY,
                "--base-url",
                fake.url,
                "--set",
                "mac_lookup=maybe",
            ),
            "on or off",
        )
        assert fake.requests == 0
