"""The HTTP app: ``POST /slack/events`` (events, interactivity, slash commands, options), ``GET /healthz`` and
``GET /metrics`` (Prometheus), every request counted by ``app.core.metrics.instrument``.

``app.wsgi:application`` is the WSGI callable for gunicorn; it is built from the environment on first access.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from slack_bolt import App

from app.core.metrics import (
    HEALTH_PATH,
    METRICS_PATH,
    Metrics,
    current,
    fixed_routes,
    instrument,
    json_response,
    with_ops_endpoints,
)
from app.scheduler import process_health
from app.slack.context import SlackContext
from app.slack.payloads import SlackEventsHandler

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"


def health(ctx: SlackContext) -> tuple[bool, dict[str, Any]]:
    """Whether the process can serve (the database answers), its scheduler's jobs and the device index state."""
    ok, body = process_health(ctx.runtime.db.engine, ctx.scheduler)
    loaded = ctx.devices.loaded_at
    return ok, {**body, "devices": {"count": ctx.devices.size, "loaded_at": loaded.isoformat() if loaded else None}}


def make_wsgi(
    ctx: SlackContext, bolt_app: App, *, signing_secret: str, metrics: Metrics | None = None
) -> WSGIApplication:
    """Route Slack's requests to Bolt (signed ones only: ``signing_secret``), answer health checks and scrapes;
    count every request in ``metrics``."""
    slack = SlackEventsHandler(bolt_app, signing_secret=signing_secret, path=EVENTS_PATH)
    metrics = metrics if metrics is not None else current()
    metrics.watch_outbox(ctx.outbox.pending_count)

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == EVENTS_PATH:
            if method != "POST":
                return json_response(start_response, "405 Method Not Allowed", {"message": "use POST"})
            return slack(environ, start_response)
        return json_response(start_response, "404 Not Found", {"message": f"no route for {path}"})

    token = ctx.runtime.settings.scrape_token
    ops = with_ops_endpoints(application, health=lambda: health(ctx), metrics=metrics, token=token)
    return instrument(ops, name="slack", route=fixed_routes(EVENTS_PATH, HEALTH_PATH, METRICS_PATH), metrics=metrics)


def build_from_environment() -> WSGIApplication:
    """Build the HTTP app from the environment (for gunicorn ``app.wsgi:application``)."""
    from app.config.settings import get_settings
    from app.core.logs import configure_logging
    from app.runtime import open_runtime
    from app.slack.bolt_app import build_app
    from app.slack.context import build_context, warm_up

    settings = get_settings()
    configure_logging(settings)
    runtime = open_runtime(settings)
    missing = runtime.settings.missing_slack_settings()
    if "SLACK_SIGNING_SECRET" not in missing and not runtime.settings.slack_signing_secret:
        missing.append("SLACK_SIGNING_SECRET")
    if missing:
        raise SystemExit(f"accessbot: set {', '.join(missing)} to serve Slack")
    ctx = build_context(runtime)
    warm_up(ctx)
    secret = runtime.settings.slack_signing_secret
    assert secret is not None
    return make_wsgi(
        ctx, build_app(ctx, signing_secret=secret.get_secret_value()), signing_secret=secret.get_secret_value()
    )


_application: WSGIApplication | None = None


def __getattr__(name: str) -> Any:
    global _application
    if name == "application":
        if _application is None:
            _application = build_from_environment()
        return _application
    raise AttributeError(name)
