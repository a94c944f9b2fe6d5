"""The Tailscale-compatible HTTP API over the built-in tailnet, as a plain WSGI application.

Every endpoint but the token endpoint needs an API key or an OAuth access token (see ``auth``); errors
are ``{"message": ...}`` with Tailscale's status codes, and an unexpected failure is a logged 500 whose
details never reach the client. Failed authentications are rate-limited per client address
(``auth.FailedAuthLimiter``): over the limit, every request of that address is a 429 with ``Retry-After``.
Behind reverse proxies, the address is taken from ``X-Forwarded-For`` of trusted proxies only (``proxies``).

This module holds the application (routing table, dispatch, error responses); requests are parsed in
``api_requests``, routes matched in ``api_routing``, and the handlers live in ``api_devices``,
``api_attributes`` and ``api_tokens``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from sqlalchemy.exc import OperationalError

from app.core.clock import Clock, utcnow
from app.core.proxies import TrustedProxies
from app.db import Database
from app.db.session import is_locked
from app.tailnet.api_attributes import delete_attribute, get_attributes, patch_attributes, set_attribute
from app.tailnet.api_devices import get_device, list_devices
from app.tailnet.api_requests import (
    MAX_BODY_BYTES,
    HttpError,
    NoCredentials,
    Request,
    bearer_or_basic,
    check_text,
    path_segments,
)
from app.tailnet.api_routing import Handler, Route, route_labels
from app.tailnet.api_tokens import issue_token
from app.tailnet.auth import (
    ATTRIBUTES_READ,
    ATTRIBUTES_WRITE,
    DEVICES_READ,
    AuthStore,
    FailedAuthLimiter,
    client_key,
)
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import AuthenticationError, TailnetError, TailnetUnavailable

__all__ = [
    "JSON_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "Handler",
    "HttpError",
    "NoCredentials",
    "Request",
    "Route",
    "TailnetApi",
    "bearer_or_basic",
    "check_text",
    "make_api",
    "path_segments",
    "route_labels",
]

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"


def _respond(
    start_response: StartResponse, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    """Send ``body`` as the JSON response with ``status``."""
    data = json.dumps(body).encode("utf-8")
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


class TailnetApi:
    """The WSGI application; see ``make_api``."""

    routes: tuple[Route, ...] = (
        Route.of("GET", "/api/v2/tailnet/{tailnet}/devices", list_devices, DEVICES_READ),
        Route.of("PATCH", "/api/v2/tailnet/{tailnet}/device-attributes", patch_attributes, ATTRIBUTES_WRITE),
        Route.of("GET", "/api/v2/device/{device}", get_device, DEVICES_READ),
        Route.of("GET", "/api/v2/device/{device}/attributes", get_attributes, ATTRIBUTES_READ),
        Route.of("POST", "/api/v2/device/{device}/attributes/{key}", set_attribute, ATTRIBUTES_WRITE),
        Route.of("DELETE", "/api/v2/device/{device}/attributes/{key}", delete_attribute, ATTRIBUTES_WRITE),
        Route.of("POST", "/api/v2/oauth/token", issue_token, None),
    )
    """The routing table: each request goes to the first route whose pattern and method fit."""

    def __init__(
        self,
        tailnet: BuiltinTailnet,
        auth: AuthStore,
        limiter: FailedAuthLimiter | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.tailnet = tailnet
        self.auth = auth
        self.limiter = limiter if limiter is not None else FailedAuthLimiter()
        self.proxies = proxies if proxies is not None else TrustedProxies()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """Serve one request; every failure becomes a JSON ``{"message": ...}`` with its status."""
        try:
            return _respond(start_response, 200, self._dispatch(environ))
        except TailnetError as exc:
            headers = list(exc.headers) if isinstance(exc, HttpError) else []
            if exc.status == 401:
                headers.append(("WWW-Authenticate", 'Basic realm="accessbot"'))
            if isinstance(exc, TailnetUnavailable):  # busy or conflicting writers: nothing was written
                headers.append(("Retry-After", "1"))
            return _respond(start_response, exc.status, {"message": exc.message}, headers)
        except OperationalError as exc:
            if not is_locked(exc):
                log.exception("database error serving %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
                return _respond(start_response, 500, {"message": "internal error"})
            log.warning("database busy serving %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            body = {"message": "the database is busy; nothing was changed, try again"}
            return _respond(start_response, 503, body, [("Retry-After", "1")])
        except Exception:
            log.exception("internal error serving %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return _respond(start_response, 500, {"message": "internal error"})

    def _dispatch(self, environ: WSGIEnvironment) -> Any:
        """Route, rate-limit, authenticate and authorise the request, then run its handler."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        segments = path_segments(environ)
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            request = Request(environ, method, params)
            client = client_key(self.proxies.client(environ))
            self._refuse_if_limited(client)
            with self._counting_failures(client):
                if route.scope is None:  # the token endpoint checks the client's credentials itself
                    return route.handler(self, request, None)
                principal = self.auth.authenticate(bearer_or_basic(request.header("Authorization")))
            principal.require(route.scope)
            return route.handler(self, request, principal)
        if allowed:
            raise HttpError(405, f"method {method} not allowed here", [("Allow", ", ".join(allowed))])
        raise HttpError(404, "not found")

    def _refuse_if_limited(self, client: str) -> None:
        """429 with ``Retry-After`` while ``client`` is over the failed-authentication limit."""
        wait = self.limiter.retry_after(client)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise HttpError(
                429,
                f"too many failed authentication attempts from your address; try again in {seconds} seconds",
                [("Retry-After", str(seconds))],
            )

    @contextlib.contextmanager
    def _counting_failures(self, client: str) -> Iterator[None]:
        """Count an ``AuthenticationError`` raised inside as a failed attempt of ``client`` (unless none was made)."""
        try:
            yield
        except AuthenticationError as exc:
            if not isinstance(exc, NoCredentials):
                self.limiter.record_failure(client)
            raise


def make_api(
    tailnet: BuiltinTailnet,
    db: Database,
    *,
    clock: Clock = utcnow,
    limiter: FailedAuthLimiter | None = None,
    proxies: TrustedProxies | None = None,
) -> TailnetApi:
    """The WSGI application serving ``tailnet`` with credentials from ``db``, times from ``clock``.

    ``limiter`` counts failed authentications per client address (default: 10 a minute); ``proxies`` says
    whose ``X-Forwarded-For`` names that address (default: nobody's, the peer is the client).
    """
    return TailnetApi(tailnet, AuthStore(db, clock=clock), limiter, proxies)
