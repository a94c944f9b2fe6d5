"""``accessbot integrations`` and the ``Integrations`` service on a real database: secrets stay encrypted."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text, update
from typer.testing import Result

import app.cli.common
import app.cli.integrations
from app.bootstrap import cipher_for
from app.config.settings import Settings
from app.core.clock import FrozenClock
from app.core.crypto import Cipher, CipherError
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables.vendors import IntegrationRow, SyncStateRow
from app.vendors.base import Agent, CredentialField, KnownAttribute, Progress, VendorSpec
from app.vendors.integrations import Integration, IntegrationError, Integrations
from app.vendors.registry import REGISTRY, VendorRegistry
from tests.clitools import Run, failed, invoker, ok
from tests.conftest import PG_URL, START

HUNTRESS_KEY = "hk_live_KEY_0123456789"
HUNTRESS_SECRET = "hs_SECRET_fedcba987654"
S1_TOKEN = "s1_TOKEN_abcdefghijklmnop"
ACME_TOKEN = "acme_TOKEN_zyxwvu"
ACME_BACKUP = "acme_BACKUP_tsrqpo"
PG_PASSPHRASE = "integration tests passphrase 0123456789"


# -- a test-only vendor ----------------------------------------------------------------------------------


@dataclass
class FakeClient:
    """What ``spec.build`` made of the stored values."""

    values: dict[str, str]
    closed: bool = field(default=False)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        return []

    def verify(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def _build_acme(values: Mapping[str, str]) -> FakeClient:
    if not values.get("token"):
        raise ValueError("Acme needs a token")
    return FakeClient(dict(values))


ACME = VendorSpec(
    id="acme",
    label="Acme EDR",
    namespace="acme",
    fields=(
        CredentialField("token", "API token", secret=True),
        CredentialField("url", "Console URL"),
        CredentialField("region", "Region", required=False),
        CredentialField("backup_token", "Backup token", secret=True, required=False),
    ),
    attributes=(KnownAttribute("acme:healthy", "boolean"),),
    build=_build_acme,
)


@pytest.fixture
def acme() -> VendorSpec:
    """The Acme test vendor: a test that asks for it runs with Acme as the only vendor (see ``vendors``)."""
    return ACME


@pytest.fixture
def vendors(request: pytest.FixtureRequest) -> VendorRegistry:
    """The vendors the service and the CLI know: only Acme in a test that asks for ``acme``, else the real ones."""
    return VendorRegistry([ACME]) if "acme" in request.fixturenames else REGISTRY


def with_vendors(db: Database, cipher: Cipher, clock: FrozenClock, *specs: VendorSpec) -> Integrations:
    """The integrations service over the same database, knowing only ``specs``."""
    return Integrations(db, cipher, clock=clock, vendors=VendorRegistry(specs))


@pytest.fixture
def real_vendors() -> VendorRegistry:
    specs = REGISTRY
    if not {"huntress", "sentinelone"} <= set(specs):
        pytest.skip("the huntress and sentinelone vendor modules are not installed")
    return specs


# -- running the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    """The environment the CLI runs in: this test's database; a key file beside SQLite, a passphrase for PG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("USER", "tester")
    for var in list(os.environ):
        if var.startswith(("TAILSCALE_", "ACCESSBOT_HUNTRESS_", "ACCESSBOT_SENTINELONE_", "ACCESSBOT_ACME_")):
            monkeypatch.delenv(var)
    monkeypatch.delenv("ACCESSBOT_CONFIG", raising=False)
    if PG_URL:
        if not os.environ.get("ACCESSBOT_SECRET_KEY"):
            monkeypatch.setenv("ACCESSBOT_SECRET_KEY", PG_PASSPHRASE)
    else:
        monkeypatch.delenv("ACCESSBOT_SECRET_KEY", raising=False)


@pytest.fixture
def run(env: None, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock, vendors: VendorRegistry) -> Run:
    """Run ``accessbot ARGS`` in-process on the frozen clock with ``vendors``; standard input is not a terminal."""
    return invoker(monkeypatch, clock, vendors)


@pytest.fixture
def cipher(env: None, db_url: str) -> Cipher:
    """The cipher the CLI uses (key file or ACCESSBOT_SECRET_KEY), from the same environment."""
    return cipher_for(Settings())  # type: ignore[call-arg]


@pytest.fixture
def service(db: Database, cipher: Cipher, clock: FrozenClock, vendors: VendorRegistry) -> Integrations:
    return Integrations(db, cipher, clock=clock, vendors=vendors)


def raw_integration(db: Database, vendor: str) -> dict[str, Any]:
    """The row as stored, columns as the database returns them."""
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM integrations WHERE vendor = :v"), {"v": vendor}).mappings().one()
    return dict(row)


def raw_audit(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT * FROM audit_events ORDER BY id")).mappings()]


def dumped(rows: Any) -> str:
    return json.dumps(rows, default=str)


def add_huntress(run: Run, *extra: str) -> str:
    return ok(
        run(
            "integrations", "add", "huntress", "--api-key", HUNTRESS_KEY, "--api-secret", HUNTRESS_SECRET,
            "--no-verify", *extra,
        )
    )  # fmt: skip


# -- add ---------------------------------------------------------------------------------------------------


def test_add_huntress_stores_settings_in_clear_and_secrets_encrypted(
    run: Run, db: Database, cipher: Cipher, real_vendors: VendorRegistry
) -> None:
    out = add_huntress(run, "--org-id", " 42 ")
    assert "connected Huntress (huntress)" in out
    assert "organization_id=42" in out
    assert "sync requested" in out and "accessbot sync" in out
    assert HUNTRESS_KEY not in out and HUNTRESS_SECRET not in out

    row = raw_integration(db, "huntress")
    stored = dumped(row)
    assert HUNTRESS_KEY not in stored and HUNTRESS_SECRET not in stored
    assert cipher.decrypt(row["credentials"]) == {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET}
    with pytest.raises(CipherError, match="ACCESSBOT_SECRET_KEY"):
        Cipher(Fernet.generate_key()).decrypt(row["credentials"])
    settings = row["settings"] if isinstance(row["settings"], dict) else json.loads(row["settings"])
    assert settings["organization_id"] == "42"


def test_add_sets_sync_requested_at_and_who(run: Run, service: Integrations, real_vendors: Any) -> None:
    add_huntress(run)
    integration = service.get("huntress")
    assert integration.sync_requested_at == START
    assert integration.created_at == integration.updated_at == START
    assert integration.created_by == integration.updated_by == "cli:tester"
    assert integration.secret_fields == ("api_key", "api_secret")
    assert integration.settings == {}
    assert integration.last_report == {}
    assert service.credentials("huntress") == {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET}


def test_add_sentinelone_with_its_url_and_token(
    run: Run, service: Integrations, db: Database, real_vendors: Any
) -> None:
    out = ok(
        run(
            "integrations", "add", "SentinelOne", "--url", "https://example.sentinelone.net/", "--api-token", S1_TOKEN,
            "--no-verify",
        )
    )  # fmt: skip
    assert "connected SentinelOne (sentinelone): url=https://example.sentinelone.net;" in out
    assert S1_TOKEN not in out
    integration = service.get("sentinelone")
    assert integration.settings == {"url": "https://example.sentinelone.net"}
    assert integration.secret_fields == ("api_token",)
    assert S1_TOKEN not in dumped(raw_integration(db, "sentinelone"))
    client = service.client("sentinelone")
    try:
        assert S1_TOKEN not in repr(client)
    finally:
        client.close()


def test_the_real_huntress_client_is_built_from_the_stored_values(
    run: Run, service: Integrations, real_vendors: Any
) -> None:
    add_huntress(run, "--org-id", "7", "--base-url", "https://api.huntress.example/")
    client = service.client("huntress")
    try:
        assert HUNTRESS_SECRET not in repr(client)
        assert "7" in repr(client)
    finally:
        client.close()


def test_secrets_may_come_from_the_environment(
    run: Run, service: Integrations, monkeypatch: pytest.MonkeyPatch, real_vendors: Any
) -> None:
    monkeypatch.setenv("ACCESSBOT_HUNTRESS_API_SECRET", HUNTRESS_SECRET)
    ok(run("integrations", "add", "huntress", "--api-key", HUNTRESS_KEY, "--no-verify"))
    assert service.credentials("huntress")["api_secret"] == HUNTRESS_SECRET


def test_omitted_secrets_are_read_from_standard_input_when_it_is_not_a_terminal(
    run: Run, service: Integrations, real_vendors: Any
) -> None:
    result = run("integrations", "add", "huntress", "--no-verify", input=f"{HUNTRESS_KEY}\n{HUNTRESS_SECRET}\n")
    ok(result)
    assert HUNTRESS_SECRET not in result.output
    assert service.credentials("huntress") == {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET}


def test_omitted_secrets_are_asked_for_with_hidden_input_in_a_terminal(
    run: Run, service: Integrations, monkeypatch: pytest.MonkeyPatch, real_vendors: Any
) -> None:
    monkeypatch.setattr(app.cli.integrations, "_interactive", lambda: True)
    result = run(
        "integrations", "add", "huntress", "--api-key", HUNTRESS_KEY, "--no-verify", input=f"{HUNTRESS_SECRET}\n"
    )
    ok(result)
    assert "Huntress API secret" in result.output
    assert HUNTRESS_SECRET not in result.output  # not echoed
    assert service.credentials("huntress")["api_secret"] == HUNTRESS_SECRET


def test_a_dash_asks_for_the_value(run: Run, service: Integrations, real_vendors: Any) -> None:
    ok(
        run(
            "integrations",
            "add",
            "sentinelone",
            "--url",
            "https://x.sentinelone.net",
            "--api-token",
            "-",
            "--no-verify",
            input=f"{S1_TOKEN}\n",
        )
    )
    assert service.credentials("sentinelone")["api_token"] == S1_TOKEN


def test_any_field_can_be_given_with_set(run: Run, service: Integrations, acme: VendorSpec) -> None:
    ok(
        run(
            "integrations",
            "add",
            "acme",
            "--set",
            f"token={ACME_TOKEN}",
            "--set",
            "url=https://acme.example/api",
            "--set",
            f"backup-token={ACME_BACKUP}=x",
        )
    )
    integration = service.get("acme")
    assert integration.label == "Acme EDR"
    assert integration.settings == {"url": "https://acme.example/api"}
    assert integration.secret_fields == ("token", "backup_token")
    client = service.client("acme")
    assert isinstance(client, FakeClient)
    assert client.values == {"token": ACME_TOKEN, "url": "https://acme.example/api", "backup_token": f"{ACME_BACKUP}=x"}


# -- errors ------------------------------------------------------------------------------------------------


def test_adding_twice_says_to_use_update(run: Run, real_vendors: Any) -> None:
    add_huntress(run)
    failed(add_huntress_result(run), "Huntress is already connected", "integrations update huntress")


def add_huntress_result(run: Run) -> Result:
    return run("integrations", "add", "huntress", "--api-key", "other", "--api-secret", "other")


def test_a_missing_required_field_is_named(run: Run, real_vendors: Any) -> None:
    failed(run("integrations", "add", "huntress", "--api-key", HUNTRESS_KEY), "missing --api-secret", "API secret")
    failed(
        run("integrations", "add", "sentinelone", "--api-token", S1_TOKEN),
        "missing --url (Console URL) for SentinelOne",
    )


def test_an_unknown_vendor_lists_the_known_ones(run: Run, real_vendors: Any) -> None:
    known = "crowdstrike, fleet, huntress, intune, jamfpro, jumpcloud, kandji, kolide, sentinelone, simplemdm"
    failed(run("integrations", "add", "acme", "--api-key", "x"), "unknown vendor 'acme'", known)
    failed(run("integrations", "remove", "acme", "--yes"), "unknown vendor", known)


def test_an_unknown_field_is_named(run: Run, real_vendors: Any) -> None:
    failed(
        run("integrations", "add", "huntress", "--api-key", "k", "--api-secret", "s", "--set", "colour=blue"),
        "--set colour does not apply to Huntress",
        "--api-key, --api-secret, --org-id, --base-url",
    )
    failed(
        run("integrations", "add", "sentinelone", "--url", "https://x.example", "--api-key", "k"),
        "--api-key does not apply to SentinelOne",
    )


def test_a_field_given_twice_is_refused(run: Run, real_vendors: Any) -> None:
    line = failed(
        run(
            "integrations", "add", "huntress", "--api-key", HUNTRESS_KEY, "--set", "api_key=other", "--api-secret", "s"
        ),
        "given twice",
    )
    assert HUNTRESS_KEY not in line


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_value_is_refused(run: Run, value: str, real_vendors: Any) -> None:
    failed(
        run("integrations", "add", "huntress", "--api-key", value, "--api-secret", "s"), "'api_key' (API key) is empty"
    )


@pytest.mark.parametrize("url", ["example.sentinelone.net", "ftp://example.net", "https://", "https://a b.net"])
def test_a_url_field_needs_an_http_url(run: Run, url: str, real_vendors: Any) -> None:
    failed(run("integrations", "add", "sentinelone", "--url", url, "--api-token", S1_TOKEN), "'url'", "http(s) URL")


def test_a_url_with_credentials_is_refused(run: Run, real_vendors: Any) -> None:
    failed(
        run("integrations", "add", "sentinelone", "--url", "https://me:pw@x.net", "--api-token", S1_TOKEN),
        "must not contain a user name or password",
    )


def test_set_needs_name_equals_value(run: Run, acme: VendorSpec) -> None:
    failed(run("integrations", "add", "acme", "--set", "token"), "--set expects NAME=VALUE")


def test_nothing_stored_or_audited_after_an_error(run: Run, db: Database, real_vendors: Any) -> None:
    run("integrations", "add", "huntress", "--api-key", HUNTRESS_KEY, "--set", "nope=1", "--api-secret", "s")
    assert ok(run("integrations", "list", "--json")).strip() == "[]"
    assert raw_audit(db) == []


def test_commands_on_a_vendor_that_is_not_connected(run: Run, real_vendors: Any) -> None:
    failed(run("integrations", "update", "huntress", "--org-id", "1"), "Huntress is not connected")
    failed(run("integrations", "remove", "huntress", "--yes"), "Huntress is not connected")


# -- update ------------------------------------------------------------------------------------------------


def test_update_changes_only_the_given_fields(
    run: Run, service: Integrations, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, real_vendors: Any
) -> None:
    add_huntress(run, "--org-id", "7")
    clock.advance(minutes=5)
    monkeypatch.setenv("USER", "alice")
    out = ok(run("integrations", "update", "huntress", "--api-secret", "new-secret-value"))
    assert "updated Huntress" in out and "sync requested" in out
    assert "new-secret-value" not in out
    integration = service.get("huntress")
    assert service.credentials("huntress") == {
        "api_key": HUNTRESS_KEY,
        "api_secret": "new-secret-value",
        "organization_id": "7",
    }
    assert integration.updated_at == integration.sync_requested_at == START + timedelta(minutes=5)
    assert integration.updated_by == "cli:alice"
    assert integration.created_by == "cli:tester" and integration.created_at == START


def test_update_with_an_empty_value_clears_an_optional_field(
    run: Run, service: Integrations, real_vendors: Any
) -> None:
    add_huntress(run, "--org-id", "7")
    ok(run("integrations", "update", "huntress", "--org-id", ""))
    assert service.get("huntress").settings == {}
    failed(run("integrations", "update", "huntress", "--api-key", ""), "'api_key' (API key) is empty")


def test_update_needs_some_field(run: Run, real_vendors: Any) -> None:
    add_huntress(run)
    failed(run("integrations", "update", "huntress"), "nothing to update", "--api-key")


def pause(db: Database, vendor: str, until: Any, reason: str = "Huntress refused the credentials: 401") -> None:
    with db.session() as session:
        session.execute(
            update(IntegrationRow)
            .where(IntegrationRow.vendor == vendor)
            .values(paused_until=until, pause_reason=reason, sync_requested_at=None)
        )


def test_update_with_new_credentials_lifts_a_pause(
    run: Run, db: Database, service: Integrations, clock: FrozenClock, real_vendors: Any
) -> None:
    add_huntress(run)
    pause(db, "huntress", START + timedelta(hours=24))
    assert service.get("huntress").paused(clock())
    listed = ok(run("integrations", "list"))
    assert "2026-11-22T12:00:00Z" in listed
    clock.advance(hours=1)
    out = ok(run("integrations", "update", "huntress", "--api-key", "rotated-key"))
    assert "pause" in out and "lifted" in out
    integration = service.get("huntress")
    assert integration.paused_until is None and integration.pause_reason is None
    assert integration.sync_requested_at == START + timedelta(hours=1)


def test_update_with_unchanged_values_keeps_a_pause_but_requests_a_sync(
    run: Run, db: Database, service: Integrations, clock: FrozenClock, real_vendors: Any
) -> None:
    add_huntress(run, "--org-id", "7")
    pause(db, "huntress", START + timedelta(hours=24))
    clock.advance(minutes=1)
    out = ok(run("integrations", "update", "huntress", "--api-key", HUNTRESS_KEY, "--org-id", "7"))
    assert "lifted" not in out
    integration = service.get("huntress")
    assert integration.paused_until == START + timedelta(hours=24)
    assert integration.sync_requested_at == START + timedelta(minutes=1)


def test_update_after_the_key_changed_needs_every_secret(
    run: Run, service: Integrations, db: Database, monkeypatch: pytest.MonkeyPatch, real_vendors: Any
) -> None:
    add_huntress(run, "--org-id", "7")
    monkeypatch.setenv("ACCESSBOT_SECRET_KEY", "a completely different passphrase")
    failed(
        run("integrations", "update", "huntress", "--org-id", "8"),
        "cannot decrypt",
        "was ACCESSBOT_SECRET_KEY changed?",
        "api_key, api_secret",
    )
    failed(run("integrations", "update", "huntress", "--api-key", "k2"), "cannot decrypt")
    ok(run("integrations", "update", "huntress", "--api-key", "k2", "--api-secret", "s2"))
    new_cipher = Cipher.from_secret("a completely different passphrase")
    assert new_cipher.decrypt(raw_integration(db, "huntress")["credentials"]) == {"api_key": "k2", "api_secret": "s2"}
    assert Integrations(db, new_cipher).credentials("huntress")["organization_id"] == "7"


# -- remove ------------------------------------------------------------------------------------------------


def add_sync_state(db: Database, vendor: str) -> None:
    with db.session() as session:
        integration_id = session.scalar(select(IntegrationRow.id).where(IntegrationRow.vendor == vendor))
        session.add(
            SyncStateRow(
                integration_id=integration_id, device_id="1001", key="huntress:firewallStatus", value="Enabled"
            )
        )


def sync_state_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM sync_state")).scalar_one())


def test_remove_asks_for_confirmation(run: Run, service: Integrations, real_vendors: Any) -> None:
    add_huntress(run)
    result = run("integrations", "remove", "huntress", input="n\n")
    failed(result, "not removed")
    assert "Remove the Huntress integration?" in result.stdout
    assert [i.vendor for i in service.list()] == ["huntress"]
    failed(run("integrations", "remove", "huntress"), "not removed", "--yes")  # no input to confirm with
    ok(run("integrations", "remove", "huntress", input="y\n"))
    assert service.list() == []


def test_remove_deletes_the_row_and_its_sync_state(
    run: Run, db: Database, service: Integrations, real_vendors: Any
) -> None:
    add_huntress(run)
    add_sync_state(db, "huntress")
    assert sync_state_count(db) == 1
    out = ok(run("integrations", "remove", "huntress", "--yes"))
    assert "removed the Huntress integration" in out
    assert sync_state_count(db) == 0
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM integrations")).scalar_one() == 0
    add_huntress(run)  # can be connected again


# -- list --------------------------------------------------------------------------------------------------


def test_list_shows_state_and_never_secrets(run: Run, db: Database, clock: FrozenClock, real_vendors: Any) -> None:
    assert "no integrations" in ok(run("integrations", "list"))
    add_huntress(run, "--org-id", "7")
    ok(
        run(
            "integrations", "add", "sentinelone", "--url", "https://x.sentinelone.net", "--api-token", S1_TOKEN,
            "--no-verify",
        )
    )  # fmt: skip
    with db.session() as session:
        session.execute(
            update(IntegrationRow)
            .where(IntegrationRow.vendor == "sentinelone")
            .values(last_result="error", last_error="SentinelOne answered 500", last_sync_finished_at=START)
        )
    table = ok(run("integrations", "list"))
    for fragment in (
        "huntress",
        "Huntress",
        "sentinelone",
        "SentinelOne",
        "2026-11-21T12:00:00Z",
        "never synced",
        "SentinelOne answered 500",
    ):
        assert fragment in table
    data = json.loads(ok(run("integrations", "list", "--json")))
    assert [d["vendor"] for d in data] == ["huntress", "sentinelone"]
    assert data[0]["settings"] == {"organization_id": "7"}
    assert data[0]["secret_fields"] == ["api_key", "api_secret"]
    assert data[0]["created_at"] == "2026-11-21T12:00:00Z"
    assert data[0]["sync_requested_at"] == "2026-11-21T12:00:00Z"
    assert data[1]["last_result"] == "error"
    for secret in (HUNTRESS_KEY, HUNTRESS_SECRET, S1_TOKEN):
        assert secret not in table
        assert secret not in json.dumps(data)


def test_list_shows_a_pause_only_while_it_lasts(run: Run, db: Database, clock: FrozenClock, real_vendors: Any) -> None:
    add_huntress(run)
    pause(db, "huntress", START + timedelta(hours=2))
    assert "2026-11-21T14:00:00Z" in ok(run("integrations", "list"))
    clock.advance(hours=3)
    assert "2026-11-21T14:00:00Z" not in ok(run("integrations", "list"))


def test_vendors_lists_fields_and_flags(run: Run, real_vendors: Any) -> None:
    out = ok(run("integrations", "vendors"))
    for fragment in ("huntress", "api_secret", "--api-secret", "organization_id", "--org-id", "sentinelone", "--url"):
        assert fragment in out


# -- audit -------------------------------------------------------------------------------------------------


def test_audit_rows_name_secret_fields_but_never_values(run: Run, db: Database, real_vendors: Any) -> None:
    add_huntress(run, "--org-id", "7")
    ok(run("integrations", "update", "huntress", "--api-secret", "rotated-secret-value", "--org-id", "8"))
    ok(run("integrations", "remove", "huntress", "--yes"))
    rows = raw_audit(db)
    for secret in (HUNTRESS_KEY, HUNTRESS_SECRET, "rotated-secret-value"):
        assert secret not in dumped(rows)
    events = json.loads("[" + ",".join(ok(run("audit", "--json")).splitlines()) + "]")
    assert [e["action"] for e in events] == [
        "Create posture integration",
        "Update posture integration",
        "Removed posture integration",
    ]
    assert {e["actor"] for e in events} == {"cli:tester"}
    assert {e["target"] for e in events} == {"integration/huntress"}
    created, updated, removed = events
    assert created["old"] is None
    assert created["new"] == {"settings": {"organization_id": "7"}, "secret_fields": ["api_key", "api_secret"]}
    assert updated["old"] == {"settings": {"organization_id": "7"}}
    assert updated["new"] == {"settings": {"organization_id": "8"}, "changed_secret_fields": ["api_secret"]}
    assert removed["old"] == {"settings": {"organization_id": "8"}, "secret_fields": ["api_key", "api_secret"]}
    assert removed["new"] is None


def test_the_audit_action_names() -> None:
    assert AuditAction.CREATE_POSTURE_INTEGRATION == "Create posture integration"
    assert AuditAction.UPDATE_POSTURE_INTEGRATION == "Update posture integration"
    assert AuditAction.REMOVE_POSTURE_INTEGRATION == "Removed posture integration"


# -- the service directly (test vendor) --------------------------------------------------------------------


def acme_values(**extra: str) -> dict[str, str]:
    return {"token": ACME_TOKEN, "url": "https://acme.example", **extra}


def test_service_add_validates_against_the_spec(service: Integrations, acme: VendorSpec) -> None:
    with pytest.raises(IntegrationError, match=r"missing required fields 'token' \(API token\), 'url'"):
        service.add("acme", {}, actor="t")
    with pytest.raises(IntegrationError, match=r"unknown field 'colour' for Acme EDR; its fields are: token, url"):
        service.add("acme", acme_values(colour="blue"), actor="t")
    with pytest.raises(IntegrationError, match=r"'region' \(Region\) is empty"):
        service.add("acme", acme_values(region=" "), actor="t")
    with pytest.raises(IntegrationError, match="control characters"):
        service.add("acme", acme_values(region="eu\nus"), actor="t")
    with pytest.raises(IntegrationError, match=r"unknown vendor 'nope'; known vendors: acme"):
        service.add("nope", acme_values(), actor="t")
    assert service.list() == []


def test_service_secret_url_fields_are_not_echoed(db: Database, cipher: Cipher, clock: FrozenClock) -> None:
    spec = VendorSpec(
        id="hooked",
        label="Hooked",
        namespace="hooked",
        fields=(CredentialField("webhook_url", "Webhook URL", secret=True),),
        attributes=(),
        build=_build_acme,
    )
    service = with_vendors(db, cipher, clock, spec)
    with pytest.raises(IntegrationError) as info:
        service.add("hooked", {"webhook_url": "not-a-url-SECRET"}, actor="t")
    assert "SECRET" not in info.value.message
    assert "http(s) URL" in info.value.message


def test_service_integration_holds_no_secrets(service: Integrations, acme: VendorSpec) -> None:
    integration = service.add("acme", acme_values(backup_token=ACME_BACKUP, region="eu"), actor="cli:t")
    assert isinstance(integration, Integration)
    for text_ in (repr(integration), json.dumps(integration.to_json()), repr(service.list())):
        assert ACME_TOKEN not in text_ and ACME_BACKUP not in text_
    assert integration.secret_fields == ("token", "backup_token")
    assert integration.settings == {"url": "https://acme.example", "region": "eu"}
    with pytest.raises(AttributeError):
        integration.vendor = "x"  # type: ignore[misc]


def test_service_credentials_merge_secrets_and_settings(service: Integrations, acme: VendorSpec) -> None:
    service.add("acme", acme_values(region="eu"), actor="t")
    assert service.credentials("ACME") == {"token": ACME_TOKEN, "url": "https://acme.example", "region": "eu"}


def test_service_update_of_an_optional_secret_and_clearing_it(
    service: Integrations, acme: VendorSpec, clock: FrozenClock, db: Database
) -> None:
    service.add("acme", acme_values(), actor="t")
    clock.advance(minutes=1)
    updated = service.update("acme", {"backup_token": ACME_BACKUP}, actor="u")
    assert updated.secret_fields == ("token", "backup_token")
    assert updated.sync_requested_at == START + timedelta(minutes=1)
    cleared = service.update("acme", {"backup_token": ""}, actor="u")
    assert cleared.secret_fields == ("token",)
    assert service.credentials("acme") == acme_values()
    with db.session() as session:
        events = audit.query(session, action=AuditAction.UPDATE_POSTURE_INTEGRATION)
    assert [e.new_value["changed_secret_fields"] for e in events] == [["backup_token"], ["backup_token"]]


def test_service_add_and_update_request_a_sync(
    service: Integrations, acme: VendorSpec, clock: FrozenClock, db: Database
) -> None:
    service.add("acme", acme_values(), actor="t")
    with db.session() as session:
        session.execute(update(IntegrationRow).values(sync_requested_at=None))
    assert service.get("acme").sync_requested_at is None
    clock.advance(minutes=3)
    assert service.update("acme", {"region": "us"}, actor="t").sync_requested_at == START + timedelta(minutes=3)


def test_service_client_of_unusable_values_is_an_integration_error(
    service: Integrations, acme: VendorSpec, db: Database, cipher: Cipher, clock: FrozenClock
) -> None:
    service.add("acme", acme_values(), actor="t")
    service = with_vendors(db, cipher, clock, dataclasses.replace(ACME, build=_refuse))
    with pytest.raises(IntegrationError, match="the stored Acme EDR settings cannot be used: nope"):
        service.client("acme")


def _refuse(values: Mapping[str, str]) -> FakeClient:
    raise ValueError("nope")


def test_service_remove_returns_what_was_removed(service: Integrations, acme: VendorSpec) -> None:
    service.add("acme", acme_values(), actor="t")
    removed = service.remove("acme", actor="t")
    assert removed.vendor == "acme" and removed.secret_fields == ("token",)
    with pytest.raises(IntegrationError, match="Acme EDR is not connected"):
        service.get("acme")


def test_service_lists_an_integration_whose_vendor_module_is_gone(
    service: Integrations, acme: VendorSpec, db: Database, cipher: Cipher, clock: FrozenClock
) -> None:
    service.add("acme", acme_values(), actor="t")
    service = with_vendors(db, cipher, clock)  # no vendor knows it any more
    assert [(i.vendor, i.label) for i in service.list()] == [("acme", "acme")]
    with pytest.raises(IntegrationError, match="unknown vendor 'acme'; known vendors: none"):
        service.client("acme")
    service.remove("acme", actor="t")
    assert service.list() == []


def test_a_bad_key_setting_is_one_error_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESSBOT_SECRET_KEY", "too short")
    result = run("integrations", "list")
    failed(result, "ACCESSBOT_SECRET_KEY", "at least 16 characters")
    assert result.exit_code == 2
    assert "too short" not in result.output


@pytest.mark.skipif(bool(PG_URL) or os.name != "posix", reason="the key file is used with SQLite on POSIX")
def test_a_group_readable_key_file_is_one_error_line(run: Run, tmp_path: Path, real_vendors: Any) -> None:
    add_huntress(run)
    key_file = tmp_path / "accessbot.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key_file.chmod(0o640)
    failed(run("integrations", "list"), f"the key file {key_file} is accessible by group or others", "chmod 600")


def test_done_when_add_both_vendors_sync_twice_and_status(
    run: Run, real_vendors: VendorRegistry, db: Database, clock: FrozenClock
) -> None:
    """Issue 4's done-when: add both integrations, `accessbot sync` writes exactly the matched devices' attributes,
    a second sync writes nothing, and `integrations status --json` reports the counts."""
    from app.tailnet.builtin import BuiltinTailnet
    from app.tailnet.models import Actor
    from tests.fakes.vendors import (
        HUNTRESS_KEY,
        HUNTRESS_SECRET,
        SENTINELONE_TOKEN,
        FakeHuntress,
        FakeSentinelOne,
        huntress_agent,
        sentinelone_agent,
    )

    store = BuiltinTailnet(db, clock=clock)
    setup = Actor("cli:setup")
    both = store.add_device(name="both", user="a@example.com", serial_numbers=["SER-A"], actor=setup)
    huntress_only = store.add_device(name="h-only", user="b@example.com", serial_numbers=["ser-b "], actor=setup)
    neither = store.add_device(name="neither", user="c@example.com", serial_numbers=["SER-Z"], actor=setup)
    no_identity = store.add_device(name="noid", user="d@example.com", actor=setup)
    h_agents = [
        huntress_agent(0, "SER-A"),
        huntress_agent(1, "SER-B", defender_policy_status="Gpo Conflict"),
        huntress_agent(2, None),
    ]
    s_agents = [sentinelone_agent(0, "ser-a", activeThreats=1), sentinelone_agent(1, "SER-Q")]
    with FakeHuntress(h_agents, rate_limit_per_minute=None) as hfake, FakeSentinelOne(s_agents) as sfake:
        ok(
            run(
                "integrations",
                "add",
                "huntress",
                "--api-key",
                HUNTRESS_KEY,
                "--api-secret",
                HUNTRESS_SECRET,
                "--base-url",
                hfake.url,
            )
        )
        ok(run("integrations", "add", "sentinelone", "--url", sfake.url, "--api-token", SENTINELONE_TOKEN))
        first = json.loads(ok(run("sync", "--json")))
        assert [(r["vendor"], r["result"], r["matches"], r["sets"]) for r in first] == [
            ("huntress", "ok", 2, 6),
            ("sentinelone", "ok", 1, 6),
        ]
        assert set(store.get_attributes(both.id).attributes) == {
            "huntress:defenderStatus",
            "huntress:defenderPolicyStatus",
            "huntress:firewallStatus",
            "sentinelOne:activeThreats",
            "sentinelOne:agentVersion",
            "sentinelOne:encryptedApplications",
            "sentinelOne:firewallEnabled",
            "sentinelOne:infected",
            "sentinelOne:operationalState",
        }
        assert store.get_attributes(huntress_only.id).attributes["huntress:defenderPolicyStatus"] == "Gpo Conflict"
        assert store.get_attributes(neither.id).attributes == {}
        assert store.get_attributes(no_identity.id).attributes == {}
        second = json.loads(ok(run("sync", "--json")))
        assert [(r["sets"], r["deletes"], r["write_calls"]) for r in second] == [(0, 0, 0), (0, 0, 0)]
        human = ok(run("sync", "huntress"))
        assert "2 matches between 3 Tailscale devices with identifiers and 3 Huntress agents" in human
    statuses = {s["vendor"]: s for s in json.loads(ok(run("integrations", "status", "--json")))}
    huntress = statuses["huntress"]
    assert huntress["state"] == "ok"
    assert huntress["summary"] == "2 matches between 3 Tailscale devices with identifiers and 3 Huntress agents"
    assert (
        huntress["devices_synced"],
        huntress["agents_without_serial"],
        huntress["devices_without_identity"],
        huntress["duplicate_serials_resolved"],
    ) == (2, 1, 1, 0)
    assert statuses["sentinelone"]["summary"] == (
        "1 match between 3 Tailscale devices with identifiers and 2 SentinelOne agents"
    )
