"""The WSGI app of the request API.

- ``POST /api/v1/requests``: ask for access (201 with the request, ``Location`` its URL);
- ``GET /api/v1/requests/{id}``: one of the client's own requests;
- ``POST /api/v1/requests/{id}/cancel``: cancel one of the client's own requests while pending or scheduled.

Every call sends ``Authorization: Bearer <request client token>`` (``accessbot request-clients create``). Answers
are JSON; errors are ``{"message": ...}`` (plus ``errors`` by field for a submission that does not validate) with
400, 401, 403, 404, 405, 409, 413, 415 or 503. Another client's request answers 404, as one that does not exist.
There is no route that approves or denies: approvals happen in Slack only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from app.access import outside
from app.access.errors import (
    AccessError,
    AlreadyDecided,
    DatabaseBusy,
    DirectoryUnavailable,
    NotAllowed,
    RequestNotFound,
    SubmissionInvalid,
)
from app.access.request_clients import ClientUnauthorized, RequestClient, RequestClients
from app.access.service import AccessService
from app.core.clock import Clock
from app.core.proxies import TrustedProxies
from app.request_api.body import BodyError, read_json, request_fields
from app.tailnet.auth_limiter import FailedAuthLimiter, client_key
from app.tailnet.errors import TailnetError
from app.web.ops import RouteOf

log = logging.getLogger(__name__)

PREFIX = "/api/"
REQUESTS_PATH = "/api/v1/requests"
_ONE = re.compile(r"/api/v1/requests/([0-9]{1,10})")
_CANCEL = re.compile(r"/api/v1/requests/([0-9]{1,10})/cancel")
ROUTE_LABELS = (REQUESTS_PATH, REQUESTS_PATH + "/{id}", REQUESTS_PATH + "/{id}/cancel")

Answer = tuple[str, dict[str, Any], list[tuple[str, str]]]
"""Status line, JSON body, extra headers."""


class ApiError(Exception):
    """An answer other than success: status line, message, optional field errors and headers."""

    def __init__(
        self,
        status: str,
        message: str,
        errors: dict[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or []


_ACCESS_STATUS: tuple[tuple[type[AccessError], str], ...] = (
    (RequestNotFound, "404 Not Found"),
    (NotAllowed, "403 Forbidden"),
    (AlreadyDecided, "409 Conflict"),
    (DirectoryUnavailable, "503 Service Unavailable"),
    (DatabaseBusy, "503 Service Unavailable"),
)


def route_label(environ: WSGIEnvironment) -> str | None:
    """The metrics route of a request API path (``None``: not one of its paths)."""
    path = str(environ.get("PATH_INFO", ""))
    if path == REQUESTS_PATH:
        return ROUTE_LABELS[0]
    if _ONE.fullmatch(path):
        return ROUTE_LABELS[1]
    if _CANCEL.fullmatch(path):
        return ROUTE_LABELS[2]
    return None


def routes_with_api(other: RouteOf) -> RouteOf:
    """Route labels of a listener serving the request API beside ``other``'s paths."""

    def route(environ: WSGIEnvironment) -> str:
        return route_label(environ) or other(environ)

    return route


class RequestApi:
    """Answers the request API's calls over the access service and the request clients."""

    def __init__(
        self,
        access: AccessService,
        clients: RequestClients,
        *,
        clock: Clock,
        announce: Callable[[int], object] = lambda request_id: None,
        submitted: Callable[[int], object] | None = None,
        limiter: FailedAuthLimiter | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.access = access
        self.clients = clients
        self.clock = clock
        self.limiter = limiter if limiter is not None else FailedAuthLimiter()
        """Failed authentications per client address (10 a minute): then 429 with ``Retry-After``."""
        self.proxies = proxies if proxies is not None else TrustedProxies()
        self.announce = announce
        """Called with a request's id once its change is committed: starts delivering its outbox notices now (the
        scheduled outbox job would otherwise send them within its interval)."""
        self.submitted = submitted or announce
        """Called with a new request's id once it is stored: the on-call auto-approval, then ``announce``'s work."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        try:
            status, body, headers = self._dispatch(environ)
        except ApiError as exc:
            status, headers = exc.status, exc.headers
            body = {"message": exc.message} | ({"errors": exc.errors} if exc.errors else {})
        except Exception:  # a caller gets JSON, never a traceback; the log has the details
            log.exception("request API call %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, body, headers = "500 Internal Server Error", {"message": "internal error; see accessbot's log"}, []
        return _json(start_response, status, body, headers)

    def _route(self, environ: WSGIEnvironment) -> Callable[[RequestClient], Answer]:
        """The handler of the call's path and method (404, 405 otherwise), before anyone is authenticated."""
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if path == REQUESTS_PATH:
            _require_method(method, "POST")
            return partial(self._create, environ=environ)
        if match := _ONE.fullmatch(path):
            _require_method(method, "GET")
            return partial(self._show, request_id=int(match.group(1)))
        if match := _CANCEL.fullmatch(path):
            _require_method(method, "POST")
            return partial(self._cancel, request_id=int(match.group(1)))
        raise ApiError("404 Not Found", f"no route for {path}")

    def _dispatch(self, environ: WSGIEnvironment) -> Answer:
        """Route, authenticate, run; the domain's refusals become HTTP answers."""
        handler = self._route(environ)
        client = self._authenticate(environ)
        try:
            return handler(client)
        except BodyError as exc:
            raise ApiError(exc.status, exc.message, exc.errors) from None
        except SubmissionInvalid as exc:
            raise ApiError("400 Bad Request", exc.message, exc.errors) from None
        except AccessError as exc:
            status = next((s for kind, s in _ACCESS_STATUS if isinstance(exc, kind)), "400 Bad Request")
            raise ApiError(status, exc.message) from None
        except TailnetError as exc:
            raise ApiError("503 Service Unavailable", f"the tailnet did not answer: {exc.message}") from None

    def _authenticate(self, environ: WSGIEnvironment) -> RequestClient:
        """The client whose token the call sends: 401 without a valid one, 429 for an address that failed too
        often (guessing tokens costs a request per guess, and the guesses are capped)."""
        address = client_key(self.proxies.client(environ))
        wait = self.limiter.retry_after(address)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            message = f"too many failed authentication attempts from your address; try again in {seconds} seconds"
            raise ApiError("429 Too Many Requests", message, headers=[("Retry-After", str(seconds))])
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, token = header.partition(" ")
        challenge = [("WWW-Authenticate", 'Bearer realm="accessbot request API"')]
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("401 Unauthorized", "send Authorization: Bearer <request client token>", headers=challenge)
        try:
            return self.clients.authenticate(token)
        except ClientUnauthorized as exc:
            self.limiter.record_failure(address)
            raise ApiError("401 Unauthorized", exc.message, headers=challenge) from None

    def _create(self, client: RequestClient, environ: WSGIEnvironment) -> Answer:
        fields = request_fields(read_json(environ))
        requester = _requester(client, fields["requester"])
        if not client.may_request(fields["profile"]):
            allowed = ", ".join(client.profiles)
            raise ApiError("403 Forbidden", f"this client may not request {fields['profile']!r} (only: {allowed})")
        ask = outside.OutsideRequest(
            requester_id=requester,
            profile_id=fields["profile"],
            device_ref=fields["device"],
            duration=fields["duration"],
            reason=fields["reason"],
            approver_ids=tuple(fields["approvers"]),
            starts_at=fields["starts_at"],
        )
        stored = outside.submit(self.access, ask, origin="api", request_client_id=client.id)
        self.submitted(stored.request.id)
        location = [("Location", f"{REQUESTS_PATH}/{stored.request.id}")]
        return "201 Created", outside.to_json(stored), location

    def _show(self, client: RequestClient, request_id: int) -> Answer:
        stored = outside.get(self.access.db, request_id, request_client_id=client.id)
        return "200 OK", outside.to_json(stored), []

    def _cancel(self, client: RequestClient, request_id: int) -> Answer:
        stored = outside.cancel(
            self.access.db, request_id, actor=client.actor, at=self.clock(), request_client_id=client.id
        )
        self.announce(request_id)
        return "200 OK", outside.to_json(stored), []


def _requester(client: RequestClient, named: str | None) -> str:
    """The Slack user the request is made as: the client's pinned one, else the one the body names."""
    if client.requester_id is not None:
        if named is not None and named != client.requester_id:
            raise ApiError("403 Forbidden", f"this client requests only as {client.requester_id}")
        return client.requester_id
    if named is None:
        raise ApiError(
            "400 Bad Request",
            "requester: name the Slack user the request is for",
            {"requester": "requester is required (a Slack user id such as U012AB3CD)"},
        )
    return named.strip()


def _require_method(method: str, allowed: str) -> None:
    if method != allowed:
        raise ApiError("405 Method Not Allowed", f"use {allowed}", headers=[("Allow", allowed)])


def _json(
    start_response: StartResponse, status: str, body: dict[str, Any], headers: list[tuple[str, str]]
) -> list[bytes]:
    data = json.dumps(body).encode()
    base = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")]
    start_response(status, base + headers)
    return [data]


def with_request_api(app: WSGIApplication, api: RequestApi) -> WSGIApplication:
    """Serve ``/api/...`` with ``api`` in front of ``app`` (the Slack events app)."""

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith(PREFIX):
            return api(environ, start_response)
        return app(environ, start_response)

    return application
