"""``accessbot reconcile [--fix] [--json]`` on a real database, over the built-in tailnet and through the Tailscale
adapter (pointed at the built-in store's Tailscale-compatible API on 127.0.0.1); and the scheduled job as
``Services.scheduler`` wires it, telling the admins through the fake Slack Web API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from app import bootstrap
from app.access.people import StaticDirectory
from app.access.reconcile import MAX_READS, PACE, Reconciler
from app.access.service import AccessService
from app.config.model import load_config
from app.config.settings import get_settings
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables.access import DriftFindingRow
from app.scheduler import RECONCILE_JOB
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.tailnet.tailscale import TailscaleTailnet
from app.web.server import make_server
from tests.clitools import Run, cli_environment, invoker, ok
from tests.conftest import written
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI

PROD = "custom:prodAccess"
CONFIG = """
admins: [UADMIN]
profiles:
  - id: prod
    description: Production
    attribute: custom:prodAccess
    max_duration: 4h
    approvers: [bob@example.com]
"""
HAND = Actor("cli:someone")


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    (tmp_path / "accessbot.yml").write_text(CONFIG)
    return invoker(monkeypatch, clock)


@pytest.fixture
def laptop(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="laptop", user="alice@example.com", os="macos", actor=HAND)


@pytest.fixture
def server(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> Iterator[str]:
    """The built-in store's Tailscale-compatible API on 127.0.0.1 (what the Tailscale adapter is pointed at)."""
    http = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    http.server_close()


@pytest.fixture(params=["builtin", "tailscale"])
def via(request: pytest.FixtureRequest, run: Run, db: Database, clock: FrozenClock, monkeypatch: Any) -> str:
    """Run the CLI on the built-in tailnet, or through the Tailscale adapter with an API key of the loopback API."""
    if request.param == "tailscale":
        url = request.getfixturevalue("server")
        _, key = AuthStore(db, clock=clock).create_api_key(actor=Actor("cli:setup"), description="reconcile")
        monkeypatch.setenv("TAILSCALE_API_URL", url)
        monkeypatch.setenv("TAILSCALE_API_KEY", key)
    return str(request.param)


def outcome(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("reconcile", "--json", *args)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_no_drift_exits_0(via: str, run: Run, laptop: Device) -> None:
    result = run("reconcile")
    assert ok(result).startswith("No drift: 1 device(s) read")


def test_a_hand_set_attribute_is_listed_and_exits_1(
    via: str, run: Run, builtin: BuiltinTailnet, laptop: Device, clock: FrozenClock
) -> None:
    builtin.set_attribute(laptop.id, PROD, True, actor=HAND)
    builtin.set_attribute(laptop.id, "custom:other", 1, actor=HAND)
    result = run("reconcile")
    assert result.exit_code == 1, result.output
    assert "laptop" in result.stdout and PROD in result.stdout and "not yet" in result.stdout
    assert "1 attribute(s) held without an active grant; remove them with `accessbot reconcile --fix`" in result.stdout
    code, body = outcome(run)
    assert code == 1 and body["complete"] is True and body["new"] == 0  # the first run recorded it
    [finding] = body["findings"]
    assert (finding["device_id"], finding["attribute"], finding["value"], finding["profile"]) == (
        laptop.id,
        PROD,
        True,
        "prod",
    )
    assert finding["reported"] is None  # the CLI lists; the scheduled job tells the admins
    assert written(builtin.get_attributes(laptop.id)) == {PROD: True, "custom:other": 1}


def test_fix_removes_audits_and_exits_0(
    via: str, run: Run, builtin: BuiltinTailnet, laptop: Device, db: Database, clock: FrozenClock
) -> None:
    builtin.set_attribute(laptop.id, PROD, True, actor=HAND)
    result = run("reconcile", "--fix")
    assert ok(result).startswith(f"✓ removed {PROD} from laptop")
    assert written(builtin.get_attributes(laptop.id)) == {}
    lines = [json.loads(line) for line in ok(run("audit", "--json", "--actor", "system:reconcile")).splitlines()]
    target = f"device/{laptop.id}/attributes/{PROD}"
    assert [(e["action"], e["target"]) for e in lines] == [("Update node attribute", target), ("Drift removed", target)]
    assert lines[1]["old"] is True  # the value removed (the Tailscale adapter's own record cannot know it)
    with db.session() as session:
        assert session.query(DriftFindingRow.resolution).all() == [("removed",)]
    assert ok(run("reconcile")).startswith("No drift")


def test_a_granted_attribute_is_not_drift(
    via: str, run: Run, builtin: BuiltinTailnet, laptop: Device, db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    config = load_config(tmp_path / "accessbot.yml")
    directory = StaticDirectory({"UREQ": "alice@example.com", "UBOB": "bob@example.com"}, {})
    service = AccessService(db, builtin, lambda: config, directory, clock=clock)
    request = service.submit(
        requester_id="UREQ",
        profile_id="prod",
        device=laptop,
        duration=timedelta(hours=1),
        approver_ids=["UBOB"],
        reason="deploy",
    )
    service.approve(request.id, "UBOB")
    code, body = outcome(run, "--fix")
    assert (code, body["findings"], body["removed"]) == (0, [], [])
    assert written(builtin.get_attributes(laptop.id)) == {PROD: True}


# -- the scheduled job -------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=DEFAULT_TOKEN) as api:
        api.add_user("UADMIN", "admin@example.com", "admin")
        yield api


def test_the_scheduler_runs_reconcile_and_tells_the_admins_once(
    run: Run,
    builtin: BuiltinTailnet,
    laptop: Device,
    db: Database,
    clock: FrozenClock,
    tmp_path: Path,
    slack: FakeSlackAPI,
) -> None:
    (tmp_path / "accessbot.yml").write_text(CONFIG + "    remove_unexplained: false\nreconcile_interval: 30m\n")
    client = WebClient(token=DEFAULT_TOKEN, base_url=slack.base_url)
    services = bootstrap.build(get_settings(), db=db, tailnet=builtin, clock=clock, slack_client=client)
    scheduler = services.scheduler(sweep=False, sync=False)
    [job] = [j for j in scheduler.get_jobs() if j.id == RECONCILE_JOB]
    assert job.trigger.interval == timedelta(minutes=30)
    assert job.max_instances == 1 and job.coalesce is True

    builtin.set_attribute(laptop.id, PROD, True, actor=HAND)
    assert job.func().reported == 1
    assert job.func().reported == 0  # once
    dms = [c for c in slack.calls("chat.postMessage") if c.ok]
    assert [c.response["channel"] for c in dms] == ["DUADMIN"]
    assert "laptop" in json.dumps(dms[0].params.get("blocks"))
    assert written(builtin.get_attributes(laptop.id)) == {PROD: True}  # reported, not removed


def test_the_scheduled_job_removes_for_remove_unexplained_profiles(
    run: Run,
    builtin: BuiltinTailnet,
    laptop: Device,
    db: Database,
    clock: FrozenClock,
    tmp_path: Path,
    slack: FakeSlackAPI,
) -> None:
    (tmp_path / "accessbot.yml").write_text(CONFIG + "    remove_unexplained: true\n")
    client = WebClient(token=DEFAULT_TOKEN, base_url=slack.base_url)
    services = bootstrap.build(get_settings(), db=db, tailnet=builtin, clock=clock, slack_client=client)
    builtin.set_attribute(laptop.id, PROD, True, actor=HAND)
    result = services.reconcile_and_report()
    assert [f.attribute for f in result.removed] == [PROD] and result.reported == 1
    assert written(builtin.get_attributes(laptop.id)) == {}
    [dm] = [c for c in slack.calls("chat.postMessage") if c.ok]
    assert "1 of them removed already" in dm.params["text"]


@pytest.mark.parametrize("interval", ["0", "none"])
def test_reconcile_interval_0_or_none_turns_the_job_off(
    run: Run, db: Database, builtin: BuiltinTailnet, clock: FrozenClock, tmp_path: Path, interval: str
) -> None:
    (tmp_path / "accessbot.yml").write_text(CONFIG + f"reconcile_interval: {interval}\n")
    services = bootstrap.build(get_settings(), db=db, tailnet=builtin, clock=clock, slack_client=WebClient())
    assert RECONCILE_JOB not in {j.id for j in services.scheduler(sweep=False, sync=False).get_jobs()}


def test_scheduled_runs_through_the_tailscale_adapter_read_a_bounded_paced_share_and_resume(
    run: Run, builtin: BuiltinTailnet, server: str, db: Database, clock: FrozenClock
) -> None:
    boxes = sorted(
        (builtin.add_device(name=f"box-{i}", user="ops@example.com", os="linux", actor=HAND) for i in range(3)),
        key=lambda d: d.id,
    )
    builtin.set_attribute(boxes[2].id, PROD, True, actor=HAND)
    _, key = AuthStore(db, clock=clock).create_api_key(actor=Actor("cli:setup"), description="reconcile")
    with TailscaleTailnet(db, api_url=server, api_key=key, clock=clock, sleep=lambda _s: None) as adapter:
        services = bootstrap.build(get_settings(), db=db, tailnet=adapter, clock=clock, slack_client=WebClient())
        scheduled = services.reconciler(scheduled=True)
        assert (scheduled.max_reads, scheduled.pace) == (MAX_READS, PACE)  # one GET per device: bounded and paced
        pauses: list[float] = []
        config = services.config
        reconciler = Reconciler(db, adapter, config, clock=clock, max_reads=2, pace=PACE, sleep=pauses.append)
        first = reconciler.run()
        assert (first.read, first.devices, first.complete, first.findings) == (2, 3, False, [])
        assert pauses == [PACE]
        second = reconciler.run()  # goes on with the third device
        assert [f.device_id for f in second.findings] == [boxes[2].id]
    built_in = bootstrap.build(get_settings(), db=db, tailnet=builtin, clock=clock, slack_client=WebClient())
    assert built_in.reconciler(scheduled=True).max_reads is None  # the built-in store is read in bulk
