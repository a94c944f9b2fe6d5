"""gunicorn's entry point: ``app.wsgi:application``, the Slack app over HTTP built from the environment on first
access in each worker (``POST /slack/events``, ``GET /healthz``, ``GET /metrics``), with the worker's own device
index refresh; the shared jobs run in ``accessbot worker``."""

from __future__ import annotations

import sys
from wsgiref.types import WSGIApplication

from app import bootstrap
from app.core.errors import ConfigError, EnvironmentProblem
from app.slack.context import warm_up

_application: WSGIApplication | None = None
WORKER_BOOT_ERROR = 3
"""gunicorn's exit code for "this worker cannot boot": the arbiter stops instead of restarting workers that would
fail the same way (a setting or the environment must change first)."""


def build_from_environment() -> WSGIApplication:
    """The Slack HTTP app from the environment; exits with one line naming any missing Slack setting."""
    services = bootstrap.build()
    services.configure_logging()
    missing = services.slack_options.missing()
    if "SLACK_SIGNING_SECRET" not in missing and services.slack_options.signing_secret is None:
        missing.append("SLACK_SIGNING_SECRET")
    if missing:
        raise SystemExit(f"accessbot: set {', '.join(missing)} to serve Slack")
    # the shared jobs run in `accessbot worker`; each gunicorn worker refreshes its own device index
    scheduler = services.scheduler(sweep=False, access=False, sync=False, devices=True)
    app = services.slack_wsgi(services.bolt_app(), services.health(scheduler, devices=True))
    warm_up(services.slack)
    scheduler.start()
    return app


def __getattr__(name: str) -> WSGIApplication:
    global _application
    if name == "application":
        if _application is None:
            try:
                _application = build_from_environment()
            except (ConfigError, EnvironmentProblem) as exc:  # one line for gunicorn's log, not a traceback
                print(f"accessbot: {exc.problem if isinstance(exc, EnvironmentProblem) else exc}", file=sys.stderr)
                raise SystemExit(WORKER_BOOT_ERROR) from None
        return _application
    raise AttributeError(name)
