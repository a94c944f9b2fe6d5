"""``accessbot serve`` (the Slack app) and ``accessbot worker`` (the scheduler alone)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import typer
from apscheduler.schedulers.background import BackgroundScheduler

from app.cli.common import console, fail, listen, serve_until_stopped
from app.config.settings import ConfigError, get_settings
from app.core.logs import configure_logging
from app.core.metrics import current
from app.runtime import Runtime, open_runtime
from app.scheduler import add_access_jobs, add_sync_job, build_scheduler

log = logging.getLogger(__name__)


def _logging() -> None:
    configure_logging(get_settings())


def _metrics_server(runtime: Runtime, ctx: object | None, scheduler: BackgroundScheduler | None, who: str) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``METRICS_PORT`` for a process without an HTTP app (the worker,
    Socket Mode), with the same ``METRICS_TOKEN`` check as the HTTP apps."""
    from app.core.metrics import json_response, with_ops_endpoints
    from app.scheduler import process_health

    metrics = current()
    if ctx is not None:
        from app.slack.context import SlackContext

        assert isinstance(ctx, SlackContext)
        metrics.watch_outbox(ctx.outbox.pending_count)

    def not_found(environ: Any, start_response: Any) -> list[bytes]:
        return json_response(start_response, "404 Not Found", {"message": "only /metrics and /healthz here"})

    app = with_ops_endpoints(
        not_found,
        health=lambda: process_health(runtime.db.engine, scheduler),
        metrics=metrics,
        token=runtime.settings.scrape_token,
    )
    assert runtime.settings.metrics_port is not None
    server = listen(app, "0.0.0.0", runtime.settings.metrics_port, runtime.settings)  # noqa: S104 - scraped
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    console.print(f"{who}: metrics on port {server.server_port} (GET /metrics, /healthz)", highlight=False)


def _scheduler(runtime: Runtime, ctx: object | None) -> BackgroundScheduler:
    scheduler = build_scheduler(runtime)
    if ctx is not None:
        from app.slack.context import SlackContext

        assert isinstance(ctx, SlackContext)
        add_access_jobs(
            scheduler,
            lifecycle=ctx.lifecycle,
            deliver=ctx.notifier.deliver,
            refresh_devices=ctx.devices.refresh_if_stale,
        )
    try:
        from app.vendors.sync import make_runner

        add_sync_job(scheduler, make_runner(runtime, ctx.config if ctx is not None else None).run_due)  # type: ignore[attr-defined]
    except ConfigError as exc:
        log.warning("EDR posture sync is off: %s", exc)
    scheduler.start()
    return scheduler


def serve(
    port: int = typer.Option(None, help="HTTP port (default: $PORT or 3000)"),
    host: str = typer.Option("0.0.0.0", help="Address to listen on in HTTP mode"),  # noqa: S104 - a server
    no_scheduler: bool = typer.Option(False, "--no-scheduler", help="Leave the jobs to `accessbot worker`"),
) -> None:
    """Run the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on POST /slack/events."""
    _logging()
    runtime = open_runtime()
    settings = runtime.settings
    missing = settings.missing_slack_settings()
    if missing:
        fail(f"set {' and '.join(missing)} to serve Slack (see README, 'Slack app')", code=2)
    from slack_bolt.error import BoltError

    from app.slack.bolt_app import build_app
    from app.slack.context import build_context, warm_up

    ctx = build_context(runtime)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    try:
        bolt_app = build_app(ctx, signing_secret=secret)
    except BoltError as exc:
        fail(f"Slack refused the bot token: {exc}", code=2)
    ctx.devices.refresh_if_stale()
    warm_up(ctx)
    if not no_scheduler:
        ctx.scheduler = _scheduler(runtime, ctx)
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        assert settings.slack_app_token is not None
        if settings.metrics_port is not None:
            _metrics_server(runtime, ctx, ctx.scheduler, "accessbot")
        _serve_socket_mode(SocketModeHandler(bolt_app, settings.slack_app_token.get_secret_value()))
        return
    from app.wsgi import make_wsgi

    assert secret is not None  # HTTP mode: missing_slack_settings() named it otherwise
    port = settings.port if port is None else port  # 0 picks a free port
    server = listen(make_wsgi(ctx, bolt_app, signing_secret=secret), host, port, settings)
    console.print(f"accessbot: HTTP on {host}:{server.server_port} (POST /slack/events, GET /healthz)", highlight=False)
    serve_until_stopped(server)


def _serve_socket_mode(handler: Any) -> None:
    """Connect (a refused app-level token is one clear line, exit 2) and serve until SIGTERM or Ctrl-C."""
    from slack_sdk.errors import SlackApiError

    try:
        handler.connect()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        fail(
            f"Slack refused SLACK_APP_TOKEN ({error or exc}): it must be an app-level token (xapp-…) "
            "with the connections:write scope",
            code=2,
        )
    except OSError as exc:
        fail(f"cannot reach Slack for Socket Mode: {exc}", code=2)
    try:
        _wait_for_stop("accessbot: Slack Socket Mode")
    finally:
        handler.close()


def _wait_for_stop(banner: str) -> None:
    """Print ``banner`` once SIGTERM is handled (whoever waits for it may stop us at once), then block until
    SIGTERM or Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(banner, highlight=False)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def worker() -> None:
    """Run only the scheduler: expiry sweeps, request timeouts, reminders, notices, device refresh."""
    _logging()
    runtime = open_runtime()
    ctx = None
    if runtime.settings.slack_bot_token:
        from app.slack.context import build_context

        ctx = build_context(runtime)
    else:
        log.warning("SLACK_BOT_TOKEN is not set: only the expiry sweep runs")
    scheduler = _scheduler(runtime, ctx)
    if runtime.settings.metrics_port is not None:
        _metrics_server(runtime, ctx, scheduler, "accessbot worker")
    try:
        _wait_for_stop("accessbot worker: running jobs (Ctrl-C to stop)")
    finally:
        scheduler.shutdown(wait=True)  # let running jobs finish; no new ones start
        log.info("accessbot worker stopped")


def register(cli: typer.Typer) -> None:
    """Add ``serve`` and ``worker``."""
    cli.command("serve")(serve)
    cli.command("worker")(worker)
