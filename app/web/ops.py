"""What every HTTP listener serves besides its own routes: ``GET /healthz``, ``GET /metrics`` (with the optional
bearer token) and the per-request counting and timing, assembled by ``ops_app``.

One function builds the stack so the Slack app, the built-in tailnet API and the metrics-only listener of the
worker answer operators the same way.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from app.core.metrics import Metrics, current
from app.web.health import HealthCheck

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"

RouteOf = Callable[[WSGIEnvironment], str]
"""Gives a request's route *template* (few distinct values, a metrics label), never its raw path."""


def json_response(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    """A JSON body with its length."""
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The app of a listener that serves only the operational endpoints."""
    return json_response(start_response, "404 Not Found", {"message": "only /metrics and /healthz here"})


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
    """Wrap ``app`` so each request counts in ``accessbot_http_requests_total`` and is timed."""
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


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    data = json.dumps({"message": "scraping needs the bearer token set in METRICS_TOKEN"}).encode()
    start_response(
        "401 Unauthorized",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("WWW-Authenticate", "Bearer")],
    )
    return [data]


def with_ops_endpoints(
    app: WSGIApplication, *, health: HealthCheck, metrics: Metrics | None = None, token: str | None = None
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


def ops_app(
    app: WSGIApplication,
    *,
    name: str,
    health: HealthCheck,
    route: RouteOf | None = None,
    metrics: Metrics | None = None,
    token: str | None = None,
) -> WSGIApplication:
    """``app`` as every listener serves it: the operational endpoints in front, every request counted under
    ``name`` (``route`` labels the app's own paths; by default only the operational paths are told apart)."""
    metrics = metrics if metrics is not None else current()
    routes = route or fixed_routes(HEALTH_PATH, METRICS_PATH)
    wrapped = with_ops_endpoints(app, health=health, metrics=metrics, token=token)
    return instrument(wrapped, name=name, route=routes, metrics=metrics)
