"""Prometheus metrics (``accessbot_*``) and the operational endpoints ``GET /metrics`` and ``GET /healthz``.

Each process has one ``Metrics`` with a ``CollectorRegistry`` of its own (never prometheus_client's global
default), created on first use by ``current()``; tests ``install`` a fresh one. Domain code reports through the
hooks below (``access_event``, ``observe_sync``, ``count_api_errors``), which only count and never raise into
the code they observe. ``instrument`` is a WSGI middleware counting and timing the requests of an app.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, wiped at each start):
every worker then writes its values there and ``/metrics`` answers with the sum over all of them.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from app.tailnet.api import Route

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SYNC_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
OUTBOX_PENDING = "accessbot_outbox_pending"

# audit action (app.access.read_model.AccessAudit value) → grant outcome label
ACCESS_OUTCOMES = {
    "Access granted": "granted",
    "Access grant failed": "failed",
    "Access denied": "denied",
    "Access revoked": "revoked",
    "Access expired": "expired",
    "Access request expired": "request_expired",
}
ACCESS_REQUESTED = "Access requested"


class _OutboxCollector(Collector):
    """``accessbot_outbox_pending``, read from the database at scrape time (absent if that fails)."""

    help = "Undelivered notifications in the outbox that will still be tried"

    def __init__(self) -> None:
        self.pending: Callable[[], int] | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The metric's name and type, so the registry reserves it."""
        return [GaugeMetricFamily(OUTBOX_PENDING, self.help)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample, or none when no outbox is watched or the database cannot be read."""
        pending = self.pending
        if pending is None:
            return
        try:
            value = pending()
        except Exception as exc:
            log.warning("outbox backlog left out of /metrics: %s", exc.__class__.__name__)
            return
        yield GaugeMetricFamily(OUTBOX_PENDING, self.help, value=value)


class Metrics:
    """Every accessbot metric, registered on ``registry`` (a new ``CollectorRegistry`` by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "accessbot_http_requests",
            "HTTP requests served, by app (slack, tailnet), route template, method and status code",
            ("app", "route", "method", "status"),
            registry=r,
        )
        self.http_duration = Histogram(
            "accessbot_http_request_duration_seconds",
            "Time to answer an HTTP request, by app, route template and method",
            ("app", "route", "method"),
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.access_requests = Counter("accessbot_access_requests", "Access requests created", registry=r)
        self.access_grants = Counter(
            "accessbot_access_grants",
            "Access requests by outcome: granted, failed, denied, revoked, expired, request_expired",
            ("outcome",),
            registry=r,
        )
        for outcome in ACCESS_OUTCOMES.values():
            self.access_grants.labels(outcome)  # export zeros from the start, so rates work
        self.sync_runs = Counter(
            "accessbot_sync_runs",
            "EDR posture sync runs, by vendor and result (ok, error, skipped)",
            ("vendor", "result"),
            registry=r,
        )
        self.sync_duration = Histogram(
            "accessbot_sync_duration_seconds",
            "Duration of EDR posture sync runs that ran (ok or error), by vendor",
            ("vendor",),
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.api_errors = Counter(
            "accessbot_api_errors",
            "Errors from the Tailscale and EDR vendor APIs, by API and error type",
            ("api", "error"),
            registry=r,
        )
        self._outbox = _OutboxCollector()
        r.register(self._outbox)

    def watch_outbox(self, pending: Callable[[], int]) -> None:
        """Report ``pending()`` (e.g. ``Outbox.pending_count``) as ``accessbot_outbox_pending`` at each scrape."""
        self._outbox.pending = pending

    def observe_http(self, app: str, route: str, method: str, status: str, seconds: float) -> None:
        """Count and time one HTTP request."""
        self.http_requests.labels(app, route, method, status).inc()
        self.http_duration.labels(app, route, method).observe(seconds)

    def access_event(self, action: str) -> None:
        """Count one audited access event (a creation or an outcome; votes are not counted)."""
        if action == ACCESS_REQUESTED:
            self.access_requests.inc()
        elif action in ACCESS_OUTCOMES:
            self.access_grants.labels(ACCESS_OUTCOMES[action]).inc()

    def sync_finished(self, vendor: str, result: str, seconds: float) -> None:
        """Count one sync run (and time it unless it was skipped)."""
        self.sync_runs.labels(vendor, result).inc()
        if result != "skipped":
            self.sync_duration.labels(vendor).observe(seconds)

    def api_error(self, api: str, error: str) -> None:
        """Count one error from an upstream API."""
        self.api_errors.labels(api.lower(), error).inc()

    def exposed_registry(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this registry, or with ``PROMETHEUS_MULTIPROC_DIR`` set the values of every
        process that writes there (gunicorn workers), summed, plus the outbox backlog."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return self.registry
        from prometheus_client.multiprocess import MultiProcessCollector

        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=directory)
        combined.register(self._outbox)
        return combined

    def wsgi_app(self) -> WSGIApplication:
        """The exposition endpoint (Prometheus text, or OpenMetrics when the scraper asks for it)."""
        return make_wsgi_app(self.exposed_registry())


_current: Metrics | None = None
_current_lock = threading.Lock()


def current() -> Metrics:
    """This process's metrics, created on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Metrics()
        return _current


def install(metrics: Metrics | None) -> Metrics | None:
    """Make ``metrics`` this process's metrics (``None``: a fresh one on next use); returns the previous one."""
    global _current
    with _current_lock:
        previous, _current = _current, metrics
        return previous


# -- hooks for the domain ---------------------------------------------------------------------------------


def access_event(session: Session, action: str) -> None:
    """Count an access event once ``session`` commits (a rolled-back transaction counts nothing)."""
    metrics = current()
    event.listen(session, "after_commit", lambda _session: metrics.access_event(str(action)), once=True)


def observe_sync(run: Callable[Concatenate[S, str, P], R]) -> Callable[Concatenate[S, str, P], R]:
    """Decorate ``SyncRunner.run``: count the run by vendor and report result, time it.

    A run that raises instead of returning a report is counted as ``error`` when the vendor id is known.
    """

    @functools.wraps(run)
    def wrapper(self: S, vendor_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            report = run(self, vendor_id, *args, **kwargs)
        except Exception:
            from app.vendors.registry import vendors

            vendor = vendor_id.strip().lower()
            if vendor in vendors():
                current().sync_finished(vendor, "error", time.perf_counter() - started)
            raise
        vendor, result = getattr(report, "vendor", vendor_id), getattr(report, "result", "ok")
        current().sync_finished(str(vendor), str(result), time.perf_counter() - started)
        return report

    return wrapper


def count_api_errors(
    errors: type[BaseException], *, api: str | Callable[[Any], str]
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Decorate a client method: each ``errors`` it raises is counted under ``api`` (or ``api(self)``)."""

    def decorate(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except errors as exc:
                current().api_error(api if isinstance(api, str) else api(self), type(exc).__name__)
                raise

        return wrapper

    return decorate


# -- WSGI -------------------------------------------------------------------------------------------------

RouteOf = Callable[[WSGIEnvironment], str]


class _Observed:
    """A response iterable that reports when the server closes it (the body has then been sent)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        """Close the wrapped body, then report once."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


def instrument(app: WSGIApplication, *, name: str, route: RouteOf, metrics: Metrics | None = None) -> WSGIApplication:
    """Wrap ``app`` so each request counts in ``accessbot_http_requests_total`` and is timed.

    ``route(environ)`` must give a route *template* (few distinct values), never a raw path.
    """
    observed = metrics if metrics is not None else current()

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        method = method if method in HTTP_METHODS else "OTHER"
        try:
            label = route(environ)
        except Exception:
            label = "other"
        status = ["500"]

        def capture(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        def done() -> None:
            observed.observe_http(name, label, method, status[0], time.perf_counter() - started)

        try:
            body = app(environ, capture)  # type: ignore[arg-type]
        except BaseException:
            done()
            raise
        if isinstance(body, list):  # already complete: report now, hand the list on untouched
            done()
            return body
        return _Observed(body, done)

    return application


def fixed_routes(*paths: str) -> RouteOf:
    """Route labels for an app with fixed paths: the path itself if listed, else ``other``."""
    known = frozenset(paths)

    def route(environ: WSGIEnvironment) -> str:
        path = environ.get("PATH_INFO", "")
        return path if path in known else "other"

    return route


def api_routes(routes: Iterable[Route], *paths: str) -> RouteOf:
    """Route labels for the built-in tailnet API: the matching pattern (``/api/v2/device/{device}``),
    else one of ``paths`` (``/healthz``, ``/metrics``), else ``other``."""
    from app.tailnet.api import path_segments

    patterns = list(routes)
    fixed = fixed_routes(*paths)

    def route(environ: WSGIEnvironment) -> str:
        segments = path_segments(environ)
        for candidate in patterns:
            if candidate.match(segments) is not None:
                return "/" + "/".join(candidate.pattern)
        return fixed(environ)

    return route


def json_response(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    """A JSON body with its length."""
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


Health = Callable[[], tuple[bool, dict[str, Any]]]


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    data = json.dumps({"message": "scraping needs the bearer token set in METRICS_TOKEN"}).encode()
    start_response(
        "401 Unauthorized",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("WWW-Authenticate", "Bearer")],
    )
    return [data]


def with_ops_endpoints(
    app: WSGIApplication, *, health: Health, metrics: Metrics | None = None, token: str | None = None
) -> WSGIApplication:
    """Serve ``/healthz`` (200, or 503 when ``health()`` says not ok) and ``/metrics`` in front of ``app``.

    With ``token`` (``METRICS_TOKEN``) a scrape must send ``Authorization: Bearer <token>``; anything else gets
    401 ``{"message": ...}``. The comparison takes the same time wherever a wrong token differs.
    """
    exporter = (metrics if metrics is not None else current()).wsgi_app()
    expected = f"Bearer {token}".encode() if token else None

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH:
            if expected is not None:
                sent = str(environ.get("HTTP_AUTHORIZATION", "")).encode("utf-8", "replace")
                if not hmac.compare_digest(sent, expected):
                    return _unauthorized(start_response)
            return exporter(environ, start_response)
        if path == HEALTH_PATH:
            ok, body = health()
            return json_response(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        return app(environ, start_response)

    return application


def database_state(engine: Engine) -> str:
    """``ok`` when the database answers ``SELECT 1``, else ``error: <exception class>`` (no details: no secrets)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"
