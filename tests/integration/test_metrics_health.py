"""Operability: ``/metrics`` (Prometheus text) and ``/healthz`` of the Slack app, of ``accessbot tailnet serve`` and
of ``accessbot worker`` (``METRICS_PORT``), and the counters moved by Slack requests, grants, syncs and API errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from app.core.clock import FrozenClock, utcnow
from app.core.crypto import Cipher
from app.core.metrics import (
    Metrics,
    access_outcome,
    access_requested,
    current,
    install,
)
from app.db import Database
from app.db.tables.access import RequestStatus
from app.scheduler import EXPIRY_SWEEP_JOB, build_scheduler, scheduler_status
from app.slack.ids import ActionId
from app.tailnet.api import TailnetApi, route_labels
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import NotFound, TailnetUnavailable
from app.tailnet.http import RetryingSender, RetryPolicy
from app.tailnet.models import Actor
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.sync import SyncRunner
from app.web.ops import fixed_routes, instrument, with_ops_endpoints
from tests.e2e import conftest as e2e
from tests.e2e.conftest import BOB, CONFIG_YAML, POLICY_HUJSON, REQUESTER, AppUnderTest
from tests.e2e.test_access_flow import click, dm_message, request_and_submit
from tests.e2e.test_processes import app_env, wait_for_line
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_payloads import slash_command
from tests.fakes.vendors import HUNTRESS_KEY, HUNTRESS_SECRET, FakeHuntress, huntress_agent

Labels = dict[str, str]

# the end-to-end Slack app (tests/e2e/conftest.py) and the fixtures it needs
app_server = e2e.app_server
fake_slack = e2e.fake_slack
extra_settings = e2e.extra_settings
slack_bot_token = e2e.slack_bot_token
slack_signing_secret = e2e.slack_signing_secret


@pytest.fixture(autouse=True)
def metrics() -> Iterator[Metrics]:
    """A fresh registry for each test (installed before the app under test is built)."""
    fresh = Metrics()
    previous = install(fresh)
    yield fresh
    install(previous)


def parse(text: str) -> dict[str, list[tuple[Labels, float]]]:
    """Sample name → [(labels, value)]; fails on anything that is not valid Prometheus text."""
    out: dict[str, list[tuple[Labels, float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("accessbot_"), family.name
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(parsed: dict[str, list[tuple[Labels, float]]], name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels`` (``None`` when absent)."""
    found = [v for have, v in parsed.get(name, []) if all(have.get(k) == want for k, want in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def scrape(url: str, token: str | None = None) -> dict[str, list[tuple[Labels, float]]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


# -- the Slack app ----------------------------------------------------------------------------------------


def test_slack_requests_and_grant_outcomes_are_counted(app_server: AppUnderTest) -> None:
    app = app_server
    before = scrape(app.url)
    assert value(before, "accessbot_access_requests_total") == 0
    for outcome in ("granted", "failed", "denied", "revoked", "expired", "request_expired"):
        assert value(before, "accessbot_access_grants_total", outcome=outcome) == 0
    assert value(before, "accessbot_http_requests_total", route="/slack/events") is None

    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    assert click(app, ActionId.APPROVE, request_id, BOB, channel, ts).status_code == 200
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    body = slash_command("/posture", "help", REQUESTER, "C1", app.fake.response_url_for("help"))
    assert app.slack.post(body, signed=False).status_code == 401
    assert httpx.get(f"{app.url}/no/such/path", timeout=5).status_code == 404
    app.clock.advance(hours=2)
    assert app.ctx.lifecycle.end_expired_grants() == 1

    after = scrape(app.url)
    assert value(after, "accessbot_access_requests_total") == 1
    assert value(after, "accessbot_access_grants_total", outcome="granted") == 1
    assert value(after, "accessbot_access_grants_total", outcome="expired") == 1
    assert value(after, "accessbot_access_grants_total", outcome="failed") == 0
    events = {"app": "slack", "route": "/slack/events", "method": "POST"}
    ok = value(after, "accessbot_http_requests_total", status="200", **events)
    assert ok is not None and ok >= 4  # shortcut, profile choice, submission, approval
    assert value(after, "accessbot_http_requests_total", status="401", **events) == 1
    assert value(after, "accessbot_http_request_duration_seconds_count", **events) == ok + 1
    assert value(after, "accessbot_http_requests_total", route="other", method="GET", status="404") == 1
    assert value(after, "accessbot_http_requests_total", route="/metrics", method="GET", status="200") == 1
    assert value(after, "accessbot_outbox_pending") == app.ctx.outbox.pending_count()


def test_healthz_shows_the_scheduler_and_its_jobs(app_server: AppUnderTest) -> None:
    app = app_server
    body = httpx.get(f"{app.url}/healthz", timeout=5).json()
    assert body["ok"] is True and body["database"] == "ok"
    assert body["scheduler"] is None  # this process runs no jobs
    assert body["devices"]["count"] == 3

    scheduler = build_scheduler(app.builtin, sweep_every=timedelta(seconds=30))
    app.health.add("scheduler", lambda: scheduler_status(scheduler))
    scheduler.start()
    try:
        running = httpx.get(f"{app.url}/healthz", timeout=5)
        assert running.status_code == 200
        status = running.json()["scheduler"]
        assert status["running"] is True
        [job] = status["jobs"]
        assert job["id"] == EXPIRY_SWEEP_JOB
        assert job["next_run_time"].endswith("Z")
    finally:
        scheduler.shutdown(wait=True)
    stopped = httpx.get(f"{app.url}/healthz", timeout=5).json()["scheduler"]
    assert stopped == {"running": False, "jobs": []}


def test_healthz_is_503_when_the_database_is_unreachable(
    app_server: AppUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_server
    unreachable = Database(create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'accessbot.db'}"))
    monkeypatch.setattr(app.health, "engine", unreachable.engine)
    response = httpx.get(f"{app.url}/healthz", timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["database"] == "error: OperationalError"
    assert "missing-dir" not in response.text  # no details that could hold a URL or a password
    assert value(scrape(app.url), "accessbot_http_requests_total", route="/healthz", status="503") == 1


# -- sync runs and upstream API errors --------------------------------------------------------------------


def test_sync_runs_are_counted_by_vendor_and_result(
    db: Database, clock: FrozenClock, builtin: BuiltinTailnet, metrics: Metrics
) -> None:
    integrations = Integrations(db, Cipher.from_secret("a test passphrase of some length"), clock=clock)
    runner = SyncRunner(db, builtin, integrations, mode=NamespaceMode.VENDOR, clock=clock)
    builtin.add_device(name="host0", user="u0@example.com", serial_numbers=["SER-0"], actor=Actor("cli:setup"))
    with FakeHuntress(rate_limit_per_minute=None) as fake:
        fake.set_agents([huntress_agent(0, "SER-0")])
        integrations.add(
            "huntress", {"api_key": HUNTRESS_KEY, "api_secret": HUNTRESS_SECRET, "base_url": fake.url}, actor="cli:a"
        )
        assert runner.run("huntress").result == "ok"
        fake.fail_next(401)
        assert runner.run("huntress").result == "error"
    parsed = parse(_exposition(metrics))
    assert value(parsed, "accessbot_sync_runs_total", vendor="huntress", result="ok") == 1
    assert value(parsed, "accessbot_sync_runs_total", vendor="huntress", result="error") == 1
    assert value(parsed, "accessbot_sync_duration_seconds_count", vendor="huntress") == 2
    assert value(parsed, "accessbot_api_errors_total", api="huntress", error="VendorAuthError") == 1
    with pytest.raises(Exception, match=r"not connected|no .*integration|sentinelone"):
        runner.run("sentinelone")
    parsed = parse(_exposition(metrics))
    assert value(parsed, "accessbot_sync_runs_total", vendor="sentinelone", result="error") == 1
    with pytest.raises(Exception, match="nosuchvendor"):
        runner.run("nosuchvendor")
    assert value(parse(_exposition(metrics)), "accessbot_sync_runs_total", vendor="nosuchvendor") is None


def test_tailscale_api_errors_are_counted_by_type(metrics: Metrics) -> None:
    answers = iter([httpx.Response(404, json={"message": "device not found"}), httpx.Response(503)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    client = httpx.Client(base_url="https://api.example", transport=httpx.MockTransport(handler))
    sender = RetryingSender(client, policy=RetryPolicy(max_attempts=1), sleep=lambda _s: None)
    with pytest.raises(NotFound):
        sender.send("GET", "/api/v2/device/x")
    with pytest.raises(TailnetUnavailable):
        sender.send("GET", "/api/v2/device/x")
    assert sender.send.__name__ == "send"  # the decorated method keeps its name and docstring
    parsed = parse(_exposition(metrics))
    assert value(parsed, "accessbot_api_errors_total", api="tailscale", error="NotFound") == 1
    assert value(parsed, "accessbot_api_errors_total", api="tailscale", error="TailnetUnavailable") == 1


def test_access_events_count_only_when_their_transaction_commits(db: Database, metrics: Metrics) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        access_outcome(session, "granted")
        access_requested(session)
        raise RuntimeError("rolled back")
    assert metrics.access_grants.labels("granted")._value.get() == 0
    assert metrics.access_requests._value.get() == 0
    with db.session() as session:
        access_outcome(session, "granted")
        access_requested(session)
    # which changes count under which label (a vote under none) is the transition table's: test_access_transitions
    assert metrics.access_grants.labels("granted")._value.get() == 1
    assert metrics.access_requests._value.get() == 1
    assert sum(metrics.access_grants.labels(o)._value.get() for o in ("failed", "denied", "revoked")) == 0


# -- the WSGI middleware ----------------------------------------------------------------------------------


def _exposition(metrics: Metrics) -> str:
    status: list[str] = []
    body = metrics.wsgi_app()({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}, lambda s, h, e=None: status.append(s))
    assert status == ["200 OK"]
    return b"".join(body).decode()


def _call(app: Any, path: str, method: str = "GET") -> tuple[str, bytes]:
    status: list[str] = []
    body = app({"REQUEST_METHOD": method, "PATH_INFO": path}, lambda s, h, e=None: status.append(s))
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0], data


def test_instrument_counts_streamed_bodies_when_closed_and_failures_as_500(metrics: Metrics) -> None:
    def streaming(environ: Any, start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("handler failed")

        def chunks() -> Iterator[bytes]:
            if environ["PATH_INFO"] == "/broken-stream":
                raise RuntimeError("failed while streaming")
            start_response("202 Accepted", [])
            yield b"part"

        return chunks()

    app = instrument(streaming, name="test", route=fixed_routes("/stream"), metrics=metrics)
    streamed = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/stream"}, lambda s, h, e=None: None)
    assert b"".join(streamed) == b"part"
    assert value(parse(_exposition(metrics)), "accessbot_http_requests_total", route="/stream") is None
    streamed.close()  # type: ignore[attr-defined]  # the server closes the body once it is sent
    streamed.close()  # type: ignore[attr-defined]  # a second close counts nothing
    assert _call(app, "/elsewhere", method="BREW")[0] == "202 Accepted"
    with pytest.raises(RuntimeError, match="handler failed"):
        app({"REQUEST_METHOD": "GET", "PATH_INFO": "/boom"}, lambda s, h, e=None: None)
    with pytest.raises(RuntimeError, match="while streaming"):
        _call(app, "/broken-stream")
    parsed = parse(_exposition(metrics))
    assert value(parsed, "accessbot_http_requests_total", app="test", route="/stream", status="202") == 1
    assert value(parsed, "accessbot_http_requests_total", route="other", method="OTHER", status="202") == 1
    assert value(parsed, "accessbot_http_requests_total", route="other", method="GET", status="500") == 2


def test_metrics_token_guards_scrapes_but_not_health(metrics: Metrics) -> None:
    def inner(environ: Any, start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    def call(app: Any, path: str, authorization: str | None = None) -> tuple[str, dict[str, str], bytes]:
        seen: list[Any] = []
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        if authorization is not None:
            environ["HTTP_AUTHORIZATION"] = authorization
        body = b"".join(app(environ, lambda status, headers, exc=None: seen.append((status, dict(headers)))))
        return seen[0][0], seen[0][1], body

    healthy = lambda: (True, {"ok": True})  # noqa: E731
    guarded = with_ops_endpoints(inner, health=healthy, metrics=metrics, token="s3cret")
    for authorization in (None, "", "Bearer", "Bearer s3cre", "Bearer s3cret ", "Basic czNjcmV0", "bearer s3cret"):
        status, headers, body = call(guarded, "/metrics", authorization)
        assert status.startswith("401") and headers["WWW-Authenticate"] == "Bearer", authorization
        assert json.loads(body) == {"message": "scraping needs the bearer token set in METRICS_TOKEN"}
    status, _, body = call(guarded, "/metrics", "Bearer s3cret")
    assert status.startswith("200") and b"accessbot_" in body
    assert call(guarded, "/healthz")[0].startswith("200")  # load balancers probe without credentials
    assert call(guarded, "/slack/events")[0].startswith("204")  # everything else is the app's
    open_ = with_ops_endpoints(inner, health=healthy, metrics=metrics)
    assert call(open_, "/metrics")[0].startswith("200")


def test_tailnet_api_routes_are_labelled_by_pattern() -> None:
    route = route_labels(TailnetApi.routes, "/healthz")
    assert (
        route({"PATH_INFO": "/api/v2/device/n123/attributes/custom%3Ax"}) == "/api/v2/device/{device}/attributes/{key}"
    )
    assert route({"PATH_INFO": "/api/v2/tailnet/-/devices"}) == "/api/v2/tailnet/{tailnet}/devices"
    assert route({"PATH_INFO": "/healthz"}) == "/healthz"
    assert route({"PATH_INFO": "/api/v2/device/n123/secret-stuff/x/y"}) == "other"


def test_outbox_backlog_is_read_at_scrape_time_and_left_out_when_unreadable(metrics: Metrics) -> None:
    assert value(parse(_exposition(metrics)), "accessbot_outbox_pending") is None  # nothing watched yet
    backlog = [3]
    metrics.watch_outbox(lambda: backlog[0])
    assert value(parse(_exposition(metrics)), "accessbot_outbox_pending") == 3
    backlog[0] = 5
    assert value(parse(_exposition(metrics)), "accessbot_outbox_pending") == 5

    def broken() -> int:
        raise OSError("database down")

    metrics.watch_outbox(broken)
    parsed = parse(_exposition(metrics))
    assert value(parsed, "accessbot_outbox_pending") is None
    assert value(parsed, "accessbot_access_requests_total") == 0  # the rest of the scrape still works


def test_each_process_gets_its_own_registry() -> None:
    install(None)
    first = current()
    assert current() is first
    install(None)
    assert current() is not first and current().registry is not first.registry
    from prometheus_client import REGISTRY

    assert "accessbot_http_requests" not in REGISTRY._names_to_collectors


# -- the processes ----------------------------------------------------------------------------------------


def process_env(db_url: str, **extra: str) -> dict[str, str]:
    prefixes = ("SLACK_", "TAILSCALE_", "LOG_", "METRICS_", "ACCESSBOT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(DATABASE_URL=db_url, ACCESSBOT_SECRET_KEY="a process test passphrase", NO_PROXY="127.0.0.1", **extra)
    return env


def spawn(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait, and return what the process wrote on stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
    return err


def json_log_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_tailnet_serve_has_healthz_and_metrics_and_logs_json(db: Database, db_url: str, tmp_path: Path) -> None:
    live = BuiltinTailnet(db, clock=utcnow)
    device = live.add_device(name="laptop", user="a@example.com", actor=Actor("cli:setup"))
    live.set_attribute(device.id, "custom:soon", True, actor=Actor("cli:setup"), expiry=utcnow() + timedelta(seconds=1))
    _info, key = AuthStore(db).create_api_key(actor=Actor("cli:setup"), description="metrics test")
    time.sleep(1.2)  # the attribute has expired: the first sweep purges it and logs a line
    env = process_env(db_url, LOG_FORMAT="json", METRICS_TOKEN="tailnet-scrape-token")
    proc = spawn([sys.executable, "-m", "app", "tailnet", "serve", "--port", "0"], env, tmp_path)
    try:
        url = "http://127.0.0.1:" + wait_for_line(proc, r"on http://127\.0\.0\.1:(\d+)/api/v2/").group(1)
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200
        body = health.json()
        assert body["ok"] is True and body["database"] == "ok"
        assert body["scheduler"]["running"] is True
        assert [job["id"] for job in body["scheduler"]["jobs"]] == [EXPIRY_SWEEP_JOB]
        path = f"/api/v2/device/{device.id}/attributes"
        assert httpx.get(url + path, auth=(key, ""), timeout=5).status_code == 200
        assert httpx.get(url + path, timeout=5).status_code == 401
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401  # METRICS_TOKEN is set
        parsed = scrape(url, "tailnet-scrape-token")
        labels = {"app": "tailnet", "route": "/api/v2/device/{device}/attributes", "method": "GET"}
        assert value(parsed, "accessbot_http_requests_total", status="200", **labels) == 1
        assert value(parsed, "accessbot_http_requests_total", status="401", **labels) == 1
        assert value(parsed, "accessbot_http_request_duration_seconds_count", **labels) == 2
        assert value(parsed, "accessbot_http_requests_total", route="/healthz", status="200") == 1
        assert value(parsed, "accessbot_http_requests_total", route="/metrics", status="401") == 1
        deadline = time.monotonic() + 10
        while live.get_attributes(device.id).attributes.get("custom:soon") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stderr = stop(proc)
    lines = json_log_lines(stderr)
    sweep = [line for line in lines if "expiry sweep removed 1" in line["message"]]
    assert sweep and sweep[0]["level"] == "INFO" and sweep[0]["logger"] == "app.scheduler"
    assert key not in stderr


def test_worker_serves_metrics_on_metrics_port_and_logs_json(db_url: str, tmp_path: Path) -> None:
    token = "scrape-token-0123456789abcdef"
    env = process_env(db_url, LOG_FORMAT="json", METRICS_PORT="0", METRICS_TOKEN=token)
    proc = spawn([sys.executable, "-m", "app", "worker"], env, tmp_path)
    try:
        port = wait_for_line(proc, r"accessbot worker: metrics on port (\d+)").group(1)
        url = f"http://127.0.0.1:{port}"
        refused = httpx.get(f"{url}/metrics", timeout=10)  # METRICS_TOKEN is set: scrapes need it
        assert refused.status_code == 401 and "METRICS_TOKEN" in refused.json()["message"]
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}x"}, timeout=10)
        assert wrong.status_code == 401
        parsed = scrape(url, token)
        assert value(parsed, "accessbot_access_requests_total") == 0
        assert value(parsed, "accessbot_access_grants_total", outcome="granted") == 0
        wait_for_line(proc, r"accessbot worker: running jobs")
        health = httpx.get(f"{url}/healthz", timeout=10)  # open, like every /healthz
        assert health.status_code == 200 and health.json()["database"] == "ok"
        assert EXPIRY_SWEEP_JOB in [job["id"] for job in health.json()["scheduler"]["jobs"]]
        assert httpx.get(f"{url}/other", timeout=10).status_code == 404
    finally:
        stderr = stop(proc)
    assert token not in stderr
    lines = json_log_lines(stderr)
    [warning] = [line for line in lines if "SLACK_BOT_TOKEN is not set" in line["message"]]
    assert warning["level"] == "WARNING" and warning["logger"] == "app.cli.serve"
    assert warning["time"].endswith("Z")


def test_gunicorn_workers_are_summed_with_prometheus_multiproc_dir(
    db_url: str, fake_slack: FakeSlackAPI, slack_signing_secret: str, slack_bot_token: str, tmp_path: Path
) -> None:
    config = tmp_path / "accessbot.yml"
    config.write_text(CONFIG_YAML)
    (tmp_path / "policy.hujson").write_text(POLICY_HUJSON)
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config)
    env.update(PROMETHEUS_MULTIPROC_DIR=str(shared), ACCESSBOT_SECRET_KEY="a process test passphrase")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    cmd = [gunicorn, "--bind", "127.0.0.1:0", "--workers", "2", "--threads", "2", "app.wsgi:application"]
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = "http://127.0.0.1:" + wait_for_line(proc, r"Listening at: http://127\.0\.0\.1:(\d+)").group(1)
        served = 0
        deadline = time.monotonic() + 30
        while served < 30:
            assert time.monotonic() < deadline, "gunicorn did not answer"
            try:
                served += httpx.get(f"{url}/healthz", timeout=30, headers={"Connection": "close"}).status_code == 200
            except httpx.TransportError:
                time.sleep(0.1)
        deadline = time.monotonic() + 30
        while len(list(shared.glob("counter_*.db"))) < 2:  # both workers have booted and created their metrics
            assert time.monotonic() < deadline, "the second worker did not boot"
            time.sleep(0.1)
        for _ in range(6):  # whichever worker answers, the scrape shows every worker's requests
            parsed = scrape(url)
            assert value(parsed, "accessbot_http_requests_total", route="/healthz", status="200") == served
            assert value(parsed, "accessbot_access_grants_total", outcome="granted") == 0
    finally:
        stop(proc)
