"""``accessbot serve`` (the Slack app) and ``accessbot worker`` (the scheduler alone)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

import typer
from apscheduler.schedulers.background import BackgroundScheduler

from app.cli import common
from app.cli.common import console, fail, listen, serve_until_stopped
from app.web.ops import not_found

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from app.bootstrap import Services

log = logging.getLogger(__name__)


def _metrics_server(services: Services, scheduler: BackgroundScheduler | None, who: str) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``METRICS_PORT`` for a process without an HTTP app (the worker,
    Socket Mode), with the same ``METRICS_TOKEN`` check as the HTTP apps."""
    port = services.listener.metrics_port
    if port is None:
        return
    app = services.ops(not_found, name="metrics", health=services.health(scheduler))
    server = listen(app, "0.0.0.0", port, services.listener.limits)  # noqa: S104 - scraped
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    console.print(f"{who}: metrics on port {server.server_port} (GET /metrics, /healthz)", highlight=False)


def _start_scheduler(services: Services, *, shared: bool, access: bool, devices: bool) -> BackgroundScheduler:
    """``shared``: the jobs one process of the deployment runs (sweep, sync and, with ``access``, the access
    lifecycle); ``devices``: this process's own device index refresh."""
    scheduler = services.scheduler(sweep=shared, access=shared and access, sync=shared, devices=devices)
    scheduler.start()
    return scheduler


def serve(
    port: int = typer.Option(None, help="HTTP port (default: $PORT or 3000)"),
    host: str = typer.Option("0.0.0.0", help="Address to listen on in HTTP mode"),  # noqa: S104 - a server
    no_scheduler: bool = typer.Option(
        False, "--no-scheduler", help="Leave the shared jobs to `accessbot worker` (the device list is still refreshed)"
    ),
) -> None:
    """Run the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on POST /slack/events."""
    services = common.services()
    services.configure_logging()
    slack = services.slack_options
    missing = slack.missing()
    if missing:
        fail(f"set {' and '.join(missing)} to serve Slack (see README, 'Slack app')", code=2)
    from slack_bolt.error import BoltError  # slack_bolt is loaded for `serve` only, not for every command

    try:
        bolt_app = services.bolt_app()
    except BoltError as exc:
        fail(f"Slack refused the bot token: {exc}", code=2)
    from app.slack.context import warm_up  # Slack's listener graph: only for `serve`

    ctx = services.slack
    ctx.devices.refresh_if_stale()
    warm_up(ctx)
    scheduler = _start_scheduler(services, shared=not no_scheduler, access=True, devices=True)
    if slack.socket_mode and slack.app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler  # Socket Mode only (websocket client)

        services.metrics.watch_outbox(services.outbox.pending_count)
        _metrics_server(services, scheduler, "accessbot")
        _serve_socket_mode(SocketModeHandler(bolt_app, slack.app_token))
        return
    port = services.listener.port if port is None else port  # 0 picks a free port
    app = services.slack_wsgi(bolt_app, services.health(scheduler, devices=True))
    server = listen(app, host, port, services.listener.limits)
    console.print(f"accessbot: HTTP on {host}:{server.server_port} (POST /slack/events, GET /healthz)", highlight=False)
    serve_until_stopped(server)


def _serve_socket_mode(handler: SocketModeHandler) -> None:
    """Connect (a refused app-level token is one clear line, exit 2) and serve until SIGTERM or Ctrl-C."""
    from slack_sdk.errors import SlackApiError  # Slack SDK errors: loaded for `serve` only

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
    services = common.services()
    services.configure_logging()
    access = services.slack_options.bot_token is not None
    if access:
        services.metrics.watch_outbox(services.outbox.pending_count)
    else:
        log.warning("SLACK_BOT_TOKEN is not set: only the expiry sweep runs")
    scheduler = _start_scheduler(services, shared=True, access=access, devices=False)
    _metrics_server(services, scheduler, "accessbot worker")
    try:
        _wait_for_stop("accessbot worker: running jobs (Ctrl-C to stop)")
    finally:
        scheduler.shutdown(wait=True)  # let running jobs finish; no new ones start
        log.info("accessbot worker stopped")


def register(cli: typer.Typer) -> None:
    """Add ``serve`` and ``worker``."""
    cli.command("serve")(serve)
    cli.command("worker")(worker)
