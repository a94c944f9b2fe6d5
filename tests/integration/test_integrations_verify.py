"""``integrations add`` asks the vendor before it stores anything, and the vendor clients' ``verify()``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.clock import FrozenClock
from app.vendors import huntress, sentinelone
from app.vendors.base import VendorAuthError, VendorError, VendorTransientError
from app.vendors.integrations import Integrations
from tests.clitools import Run, cli_environment, failed, invoker, ok
from tests.conftest import PG_URL
from tests.fakes.vendors import (
    HUNTRESS_KEY,
    HUNTRESS_SECRET,
    SENTINELONE_TOKEN,
    FakeHuntress,
    FakeSentinelOne,
    huntress_agent,
    sentinelone_agent,
)

PASSPHRASE = "verify tests passphrase 0123456789"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    for var in list(os.environ):
        if var.startswith(("ACCESSBOT_HUNTRESS_", "ACCESSBOT_SENTINELONE_")):
            monkeypatch.delenv(var)
    if PG_URL:
        monkeypatch.setenv("ACCESSBOT_SECRET_KEY", PASSPHRASE)
    else:
        monkeypatch.delenv("ACCESSBOT_SECRET_KEY", raising=False)
    return invoker(monkeypatch, clock)


def connected(run: Run) -> str:
    return ok(run("integrations", "list", "--json"))


def add_huntress(run: Run, url: str, *extra: str, key: str = HUNTRESS_KEY) -> object:
    return run("integrations", "add", "huntress", "--api-key", key, "--api-secret", HUNTRESS_SECRET,
               "--base-url", url, *extra)  # fmt: skip


def test_accepted_credentials_are_stored_and_a_sync_is_requested(run: Run) -> None:
    with FakeHuntress([huntress_agent(0, "S1")], rate_limit_per_minute=None) as fake:
        out = ok(add_huntress(run, fake.url))  # type: ignore[arg-type]
        assert [c.params.get("limit") for c in fake.calls] == ["1"]
    lines = out.splitlines()
    assert lines[0].startswith("connected Huntress (huntress)")
    assert lines[1] == "Huntress accepted the credentials (agents are listed)"
    assert lines[2] == (
        "sync requested: a running 'accessbot serve' or 'accessbot worker' starts it within about a minute; "
        "to sync now, run: accessbot sync huntress"
    )
    assert '"sync_requested_at": "' in connected(run)


def test_a_refused_key_is_one_line_and_nothing_is_stored(run: Run, tmp_path: Path) -> None:
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        line = failed(add_huntress(run, fake.url, key="hk_wrong"), "Huntress refused the credentials", "HTTP 401")  # type: ignore[arg-type]
    assert "nothing stored" in line and "--no-verify" in line and "hk_wrong" not in line
    assert connected(run).strip() == "[]"
    if not PG_URL:
        assert not (tmp_path / "accessbot.key").exists()  # nothing stored: no key file either


def test_an_unreachable_vendor_is_one_line_and_nothing_is_stored(run: Run) -> None:
    with FakeSentinelOne() as gone:
        url = gone.url
    result = run("integrations", "add", "sentinelone", "--url", url, "--api-token", SENTINELONE_TOKEN)
    line = failed(result, "could not check the credentials", "did not answer", "nothing stored")
    assert SENTINELONE_TOKEN not in line
    assert connected(run).strip() == "[]"


def test_no_verify_stores_without_asking(run: Run, clock: FrozenClock, db_url: str) -> None:
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        out = ok(add_huntress(run, fake.url, "--no-verify", key="hk_unchecked"))  # type: ignore[arg-type]
        assert fake.requests == 0
    assert "credentials not checked (--no-verify): 'accessbot doctor' checks them" in out
    assert '"vendor": "huntress"' in connected(run)


def test_bad_input_is_refused_before_the_vendor_is_asked(run: Run) -> None:
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        failed(add_huntress(run, "ftp://x.example"), "'base_url'", "http(s) URL")  # type: ignore[arg-type]
        assert fake.requests == 0


# -- verify() of the clients -------------------------------------------------------------------------------


def test_huntress_verify_fetches_one_agent_of_the_organization() -> None:
    agents = [huntress_agent(i, f"S{i}") for i in range(3)]
    with FakeHuntress(agents, rate_limit_per_minute=None) as fake:
        with huntress.HuntressClient(HUNTRESS_KEY, HUNTRESS_SECRET, base_url=fake.url) as client:
            assert client.verify() == 1
        with (
            huntress.HuntressClient("wrong", HUNTRESS_SECRET, base_url=fake.url) as client,
            pytest.raises(VendorAuthError),
        ):
            client.verify()
    assert [c.params.get("limit") for c in fake.calls] == ["1", "1"]


def test_sentinelone_verify_and_its_failures() -> None:
    with FakeSentinelOne([sentinelone_agent(0, "S0")]) as fake:
        with sentinelone.SentinelOneClient(fake.url, SENTINELONE_TOKEN) as client:
            assert client.verify() == 1
        with sentinelone.SentinelOneClient(fake.url, "wrong") as client, pytest.raises(VendorAuthError):
            client.verify()
        assert [(c.params.get("limit"), c.params.get("isDecommissioned")) for c in fake.calls] == [("1", "false")] * 2
    with FakeSentinelOne() as fake:
        empty = fake.url
        with sentinelone.SentinelOneClient(empty, SENTINELONE_TOKEN) as client:
            assert client.verify() == 0
    gone = sentinelone.SentinelOneClient(empty, SENTINELONE_TOKEN, sleep=lambda _s: None)
    with gone as client, pytest.raises(VendorTransientError, match="did not answer after 2 attempts"):
        client.verify()


def test_verify_refuses_an_answer_that_is_not_the_vendors_api() -> None:
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        url = f"{fake.url}/elsewhere"
        client = huntress.HuntressClient(HUNTRESS_KEY, HUNTRESS_SECRET, base_url=url)
        with client, pytest.raises(VendorError, match="Huntress API GET /elsewhere/v1/agents failed: HTTP 404"):
            client.verify()


def test_doctor_and_add_use_the_same_client(run: Run, db_url: str) -> None:
    """What ``add`` stored is what ``Integrations.client`` builds: its ``verify()`` passes too."""
    from app.bootstrap import cipher_for
    from app.config.settings import Settings
    from app.db import Database

    with FakeHuntress([huntress_agent(0, "S1")], rate_limit_per_minute=None) as fake:
        ok(add_huntress(run, fake.url))  # type: ignore[arg-type]
        db = Database(db_url)
        try:
            client = Integrations(db, cipher_for(Settings())).client("huntress")  # type: ignore[call-arg]
            try:
                assert client.verify() == 1
            finally:
                client.close()
        finally:
            db.dispose()
