"""Prometheus metrics (``accessbot_*``): the registry and the hooks domain code reports through.

Each process has one ``Metrics`` with a ``CollectorRegistry`` of its own (never prometheus_client's global
default), created on first use by ``current()``; tests ``install`` a fresh one. Domain code reports through the
hooks below (``after_commit``, ``access_requested``, ``access_outcome``, ``observe_sync``, ``count_api_errors``),
which only count and never raise into the code they observe. The hooks know no domain words: the access flow's
transition table says which outcome label each change counts under, and the composition root declares those
labels (``declare_outcomes``). The HTTP side (``/metrics``, ``/healthz``, request timing) is ``app.web.ops``.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, wiped at each start):
every worker then writes its values there and ``/metrics`` answers with the sum over all of them.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from wsgiref.types import WSGIApplication

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SYNC_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
OUTBOX_PENDING = "accessbot_outbox_pending"


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

    def __init__(self, registry: CollectorRegistry | None = None, *, outcomes: Iterable[str] = ()) -> None:
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
            "Access requests by outcome (the labels the access flow declares)",
            ("outcome",),
            registry=r,
        )
        self.declare_outcomes(outcomes)
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

    def declare_outcomes(self, outcomes: Iterable[str]) -> None:
        """Export a zero for each access outcome label from the start, so rates work before the first one."""
        for outcome in outcomes:
            self.access_grants.labels(outcome)

    def access_requested(self) -> None:
        """Count one access request created."""
        self.access_requests.inc()

    def access_outcome(self, outcome: str) -> None:
        """Count one access request reaching ``outcome``."""
        self.access_grants.labels(outcome).inc()

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
        from prometheus_client.multiprocess import MultiProcessCollector  # only under gunicorn with several workers

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


def after_commit(session: Session, count: Callable[[Metrics], None]) -> None:
    """Call ``count(metrics)`` once ``session`` commits: a rolled-back transaction counts nothing."""
    metrics = current()
    event.listen(session, "after_commit", lambda _session: count(metrics), once=True)


def access_requested(session: Session) -> None:
    """Count an access request created in ``session``'s transaction, once it commits."""
    after_commit(session, Metrics.access_requested)


def access_outcome(session: Session, outcome: str) -> None:
    """Count an access outcome (a label the access flow declared) reached in ``session``, once it commits."""
    after_commit(session, lambda metrics: metrics.access_outcome(outcome))


class _SyncRunner(Protocol):
    def known_vendors(self) -> Collection[str]: ...


SR = TypeVar("SR", bound=_SyncRunner)


def observe_sync(run: Callable[Concatenate[SR, str, P], R]) -> Callable[Concatenate[SR, str, P], R]:
    """Decorate ``SyncRunner.run``: count the run by vendor and report result, time it.

    A run that raises instead of returning a report is counted as ``error`` when the vendor id is known.
    """

    @functools.wraps(run)
    def wrapper(self: SR, vendor_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            report = run(self, vendor_id, *args, **kwargs)
        except Exception:
            vendor = vendor_id.strip().lower()
            if vendor in self.known_vendors():  # label known ids only: an unknown one is not a vendor
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
