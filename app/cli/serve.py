"""``accessbot serve`` (the Slack app) and ``accessbot worker`` (the scheduler alone)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from apscheduler.schedulers.background import BackgroundScheduler

from app.cli import common
from app.cli.common import console, fail, listen, serve_until_stopped
from app.request_api.app import routes_with_api, with_request_api
from app.web.ops import HEALTH_PATH, METRICS_PATH, fixed_routes, not_found

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from app.bootstrap import Services
    from app.web.server import HttpServer

log = logging.getLogger(__name__)


class _AppLater:
    """The WSGI app of a server bound before the app is built: ports are taken first, so a port in use stops the
    process with one line before anything has started (or logged). Requests wait in the backlog until
    ``serve_forever``, which runs only once ``app`` is set."""

    def __init__(self) -> None:
        self.app: WSGIApplication | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.app is None:
            raise RuntimeError("served before its app was set")
        return self.app(environ, start_response)


def _bind_metrics(services: Services) -> tuple[HttpServer, _AppLater] | None:
    """Bind ``METRICS_HOST:METRICS_PORT`` (a process without an HTTP app: the worker, Socket Mode), if set."""
    port = services.listener.metrics_port
    if port is None:
        return None
    later = _AppLater()
    return listen(later, services.listener.metrics_host, port, services.listener.limits), later


def _serve_metrics(
    bound: tuple[HttpServer, _AppLater] | None,
    services: Services,
    scheduler: BackgroundScheduler,
    who: str,
    *,
    request_api: bool = False,
) -> None:
    """Serve ``/metrics`` and ``/healthz`` on the bound metrics port, with the same ``METRICS_TOKEN`` check as the
    HTTP apps; with ``request_api`` (Socket Mode, which has no Slack listener) also ``/api/v1/requests``."""
    if bound is None:
        return
    server, later = bound
    app, route, paths = not_found, None, "GET /metrics, /healthz"
    if request_api:
        app = with_request_api(not_found, services.request_api)
        route, paths = routes_with_api(fixed_routes(HEALTH_PATH, METRICS_PATH)), paths + ", /api/v1/requests"
    later.app = services.ops(app, name="metrics", health=services.health(scheduler), route=route)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    host = services.listener.metrics_host
    console.print(f"{who}: metrics on port {server.server_port} of {host} ({paths})", highlight=False, soft_wrap=True)


def _start_scheduler(services: Services, *, shared: bool, access: bool, devices: bool) -> BackgroundScheduler:
    """``shared``: the jobs one process of the deployment runs (sweep, sync and, with ``access``, the access
    lifecycle); ``devices``: this process's own device index refresh."""
    scheduler = services.scheduler(sweep=shared, access=shared and access, sync=shared, devices=devices)
    scheduler.start()
    return scheduler


def serve(
    port: int = typer.Option(None, help="HTTP port (default: $PORT or 3000)"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on in HTTP mode (0.0.0.0: every interface)"),
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
    # ports first: one in use stops the process with one line before anything starts
    later = _AppLater()
    server: HttpServer | None = None
    metrics: tuple[HttpServer, _AppLater] | None = None
    if slack.socket_mode:
        metrics = _bind_metrics(services)
    else:
        port = services.listener.port if port is None else port  # 0 picks a free port
        server = listen(later, host, port, services.listener.limits)
    from slack_bolt.error import BoltError  # slack_bolt is loaded for `serve` only, not for every command

    try:
        with _start_check_reported_here():
            bolt_app = services.bolt_app()  # auth.test: the bot token is checked against Slack
    except BoltError as exc:
        fail(f"Slack refused the bot token: {exc}", code=2)
    except OSError as exc:  # URLError, a timeout: slack_sdk already retried the connection once
        fail(
            f"cannot reach Slack at {slack.api_url} to check SLACK_BOT_TOKEN ({_reason(exc)}); check the network, "
            "a proxy (HTTPS_PROXY) and SLACK_API_URL, then start again",
            code=2,
        )
    from app.slack.context import warm_up  # Slack's listener graph: only for `serve`

    ctx = services.slack
    ctx.devices.refresh_if_stale()
    warm_up(ctx)
    scheduler = _start_scheduler(services, shared=not no_scheduler, access=True, devices=True)
    if server is None and slack.app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler  # Socket Mode only (websocket client)

        services.metrics.watch_outbox(services.outbox.pending_count)
        _serve_metrics(metrics, services, scheduler, "accessbot", request_api=True)
        _serve_socket_mode(SocketModeHandler(bolt_app, slack.app_token))
        return
    assert server is not None  # HTTP mode
    later.app = services.slack_wsgi(bolt_app, services.health(scheduler, devices=True))
    console.print(f"accessbot: HTTP on {host}:{server.server_port} (POST /slack/events, GET /healthz)", highlight=False)
    serve_until_stopped(server)


def _reason(exc: OSError) -> str:
    """The innermost reason of a connection failure (``URLError`` wraps the socket's)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, OSError):
        return _reason(reason)
    return str(reason or exc.strerror or exc)


@contextmanager
def _start_check_reported_here() -> Iterator[None]:
    """slack_sdk logs each failed attempt of a call (an ERROR and a retry line) before raising; at start the
    failure is reported by ``serve`` as one line, so those are held back for the token check only."""
    sdk_log = logging.getLogger("slack_sdk.web.base_client")
    before = sdk_log.level
    sdk_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        sdk_log.setLevel(before)


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
        fail(
            f"cannot reach Slack to open the Socket Mode connection ({_reason(exc)}); check the network and a proxy "
            "(HTTPS_PROXY), then start again",
            code=2,
        )
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
    """Run only the scheduler: expiries, timeouts, reminders, scheduled starts, notices, sync, drift."""
    services = common.services()
    services.configure_logging()
    metrics = _bind_metrics(services)  # a port in use stops the worker before anything has started
    access = services.slack_options.bot_token is not None
    if access:
        services.metrics.watch_outbox(services.outbox.pending_count)
    else:
        log.warning("SLACK_BOT_TOKEN is not set: only the expiry sweep runs")
    scheduler = _start_scheduler(services, shared=True, access=access, devices=False)
    _serve_metrics(metrics, services, scheduler, "accessbot worker")
    try:
        _wait_for_stop("accessbot worker: running jobs (Ctrl-C to stop)")
    finally:
        scheduler.shutdown(wait=True)  # let running jobs finish; no new ones start
        log.info("accessbot worker stopped")


def register(cli: typer.Typer) -> None:
    """Add ``serve`` and ``worker``."""
    cli.command("serve")(serve)
    cli.command("worker")(worker)
