"""The Tailscale-compatible HTTP API (FACTS §1) over the built-in tailnet, as a plain WSGI application.

Every endpoint but the token endpoint needs an API key or an OAuth access token (see ``auth``); errors
are ``{"message": ...}`` with Tailscale's status codes, and an unexpected failure is a logged 500 whose
details never reach the client. Failed authentications are rate-limited per client address
(``auth.FailedAuthLimiter``): over the limit, every request of that address is a 429 with ``Retry-After``.
Behind reverse proxies, the address is taken from ``X-Forwarded-For`` of trusted proxies only (``proxies``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit
from wsgiref.types import StartResponse, WSGIEnvironment

from sqlalchemy.exc import OperationalError

from app.core.clock import Clock, utcnow
from app.core.proxies import TrustedProxies
from app.db import Database
from app.db.session import is_locked
from app.tailnet import rules
from app.tailnet.auth import (
    ATTRIBUTES_READ,
    ATTRIBUTES_WRITE,
    DEVICES_READ,
    AuthStore,
    FailedAuthLimiter,
    Principal,
    client_key,
)
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.devicejson import device_to_api
from app.tailnet.errors import AuthenticationError, InvalidRequest, TailnetError, TailnetUnavailable
from app.tailnet.models import AttributeChanges, AttributeWrite

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
JSON_CONTENT_TYPE = "application/json"


class NoCredentials(AuthenticationError):
    """No credentials were presented at all: a 401, but not a failed attempt (clients may await the challenge)."""


class HttpError(TailnetError):
    """An HTTP-level refusal (unknown route, wrong method, body too large) with optional headers."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message, status=status)
        self.headers = list(headers)


# -- requests -----------------------------------------------------------------------------------------


def path_segments(environ: WSGIEnvironment) -> list[str]:
    """The request path as decoded segments, escapes such as ``custom%3Akey`` decoded exactly once.

    The raw request target (``RAW_URI``/``REQUEST_URI``) is preferred, so an escaped ``/`` stays inside its
    segment; otherwise ``PATH_INFO`` is used. Ids and keys never contain ``%``, so unquoting a
    ``PATH_INFO`` the server already decoded changes nothing, and one it left encoded gets decoded.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = urlsplit(raw).path if "://" in raw.split("?", 1)[0] else raw.split("?", 1)[0]
    else:
        path = environ.get("PATH_INFO", "")
    with contextlib.suppress(UnicodeError):  # PEP 3333: bytes carried as latin-1
        path = path.encode("latin-1").decode("utf-8")
    parts = path.split("/")[1:]
    script = environ.get("SCRIPT_NAME", "").strip("/")
    if raw and script:  # the raw target still starts with the mount point; PATH_INFO does not
        parts = parts[len(script.split("/")) :]
    if parts and parts[-1] == "":
        parts.pop()
    try:
        segments = [unquote(part, errors="strict") for part in parts]
    except UnicodeDecodeError:
        raise InvalidRequest("the request path is not valid UTF-8") from None
    if any(not seg.isprintable() for seg in segments):
        raise InvalidRequest("the request path contains control characters")
    return segments


def check_text(data: Any) -> Any:
    """Refuse JSON whose strings hold NUL or lone surrogates, which no database can store."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidRequest("the request body contains a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest("the request body contains an invalid Unicode string") from None
    return data


@dataclass
class Request:
    """One request: method, route parameters, query and a lazily read body."""

    environ: WSGIEnvironment
    method: str
    params: dict[str, str]

    def header(self, name: str) -> str | None:
        """A request header by name (case-insensitive)."""
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def query(self, name: str) -> str | None:
        """The last value of a query parameter, or ``None``."""
        try:
            values = parse_qs(self.environ.get("QUERY_STRING", ""), keep_blank_values=True, max_num_fields=50)
        except ValueError:
            raise InvalidRequest("the query string is malformed or too long") from None
        return values[name][-1] if name in values else None

    def body(self) -> bytes:
        """The raw body, at most ``MAX_BODY_BYTES``."""
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise InvalidRequest("Content-Length is not a number") from None
        if length < 0:
            raise InvalidRequest("Content-Length is negative")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        return self.environ["wsgi.input"].read(length) if length else b""

    def json_object(self, *, optional: bool = False) -> dict[str, Any]:
        """The body as a JSON object, else ``InvalidRequest``; an empty optional body is ``{}``."""
        raw = self.body()
        if optional and not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidRequest("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the request body must be a JSON object")
        return check_text(data)

    def form(self) -> dict[str, str]:
        """The body as an ``application/x-www-form-urlencoded`` form (last value of each field)."""
        try:
            text = self.body().decode("utf-8")
            fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
        except ValueError:
            raise InvalidRequest("the request body is not a valid form") from None
        return check_text({name: values[-1] for name, values in fields.items()})


def bearer_or_basic(header: str | None) -> str:
    """The credential of an ``Authorization`` header: Bearer token, or Basic user name (password ignored)."""
    if not header or not header.strip():
        raise NoCredentials("missing credentials: send an API key as HTTP Basic user name or Bearer")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic":
        user = _basic_pair(value)[0]
        if user:
            return user
    raise AuthenticationError("unsupported Authorization header; use Basic or Bearer")


def _basic_pair(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationError("malformed HTTP Basic credentials") from None
    user, _, password = decoded.partition(":")
    return user, password


# -- routing ------------------------------------------------------------------------------------------


Handler = Callable[["TailnetApi", Request, Principal | None], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A method and path pattern (``{name}`` segments capture), its handler and the scope it needs."""

    method: str
    pattern: tuple[str, ...]
    handler: Handler
    scope: str | None  # None: no authentication (the token endpoint)

    @classmethod
    def of(cls, method: str, path: str, handler: Handler, scope: str | None) -> Route:
        """A route from a path pattern such as ``/api/v2/device/{device}``."""
        return cls(method, tuple(path.strip("/").split("/")), handler, scope)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The captured parameters if ``segments`` fit the pattern, else ``None``."""
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def _respond(
    start_response: StartResponse, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


class TailnetApi:
    """The WSGI application; see ``make_api``."""

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

    # -- handlers ---------------------------------------------------------------------------------------

    def _check_tailnet(self, request: Request) -> None:
        name = request.params["tailnet"]
        if name != "-" and name.casefold() != self.tailnet.name.casefold():
            raise HttpError(404, f"tailnet {name!r} not found")

    @staticmethod
    def _fields_all(request: Request) -> bool:
        fields = request.query("fields")
        if fields in (None, "", "default"):
            return False
        if fields == "all":
            return True
        raise InvalidRequest(f"fields must be 'all' or 'default', not {fields!r}")

    def list_devices(self, request: Request, _principal: Principal | None) -> Any:
        """``GET /api/v2/tailnet/{tailnet}/devices``."""
        self._check_tailnet(request)
        fields_all = self._fields_all(request)
        return {"devices": [device_to_api(d, fields_all=fields_all) for d in self.tailnet.list_devices()]}

    def get_device(self, request: Request, _principal: Principal | None) -> Any:
        """``GET /api/v2/device/{deviceId}``."""
        fields_all = self._fields_all(request)
        return device_to_api(self.tailnet.get_device(request.params["device"]), fields_all=fields_all)

    def get_attributes(self, request: Request, _principal: Principal | None) -> Any:
        """``GET /api/v2/device/{deviceId}/attributes``."""
        return self.tailnet.get_attributes(request.params["device"]).to_api()

    def set_attribute(self, request: Request, principal: Principal | None) -> Any:
        """``POST /api/v2/device/{deviceId}/attributes/{key}``."""
        assert principal is not None
        body = request.json_object()
        if "value" not in body:
            raise InvalidRequest('the request body needs a "value"')
        expiry = rules.parse_expiry_field(body.get("expiry"))
        comment = rules.validate_comment(body.get("comment"))
        self.tailnet.set_attribute(
            request.params["device"],
            request.params["key"],
            body["value"],
            actor=principal.actor,
            expiry=expiry,
            comment=comment,
        )
        return {}

    def delete_attribute(self, request: Request, principal: Principal | None) -> Any:
        """``DELETE /api/v2/device/{deviceId}/attributes/{key}`` (an optional body may carry a comment)."""
        assert principal is not None
        comment = rules.validate_comment(request.json_object(optional=True).get("comment"))
        self.tailnet.delete_attribute(
            request.params["device"], request.params["key"], actor=principal.actor, comment=comment
        )
        return {}

    def patch_attributes(self, request: Request, principal: Principal | None) -> Any:
        """``PATCH /api/v2/tailnet/{tailnet}/device-attributes``: all changes or none."""
        assert principal is not None
        self._check_tailnet(request)
        body = request.json_object()
        nodes = body.get("nodes")
        if not isinstance(nodes, dict):
            raise InvalidRequest('the request body needs "nodes": {deviceId: {key: {"value": ...} | null}}')
        changes: AttributeChanges = {}
        for device_id, per_key in nodes.items():
            if not isinstance(per_key, dict):
                raise InvalidRequest(f"nodes[{device_id!r}] must be an object of attribute keys")
            writes = changes.setdefault(device_id, {})
            for key, item in per_key.items():
                if item is None:
                    writes[key] = None
                    continue
                if not isinstance(item, dict) or "value" not in item:
                    raise InvalidRequest(f'nodes[{device_id!r}][{key!r}] must be {{"value": ...}} or null')
                writes[key] = AttributeWrite(item["value"], rules.parse_expiry_field(item.get("expiry")))
        comment = rules.validate_comment(body.get("comment"))
        self.tailnet.set_many(changes, actor=principal.actor, comment=comment)
        return {}

    def issue_token(self, request: Request, _principal: Principal | None) -> Any:
        """``POST /api/v2/oauth/token``: the client-credentials grant (form fields or HTTP Basic)."""
        form = request.form()
        grant = form.get("grant_type", "client_credentials")
        if grant != "client_credentials":
            raise InvalidRequest(f"unsupported grant_type {grant!r}; use client_credentials")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        header = request.header("Authorization") or ""
        if not client_id and header[:6].lower() == "basic ":
            user, password = _basic_pair(header[6:].strip())
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        if not client_id and not client_secret:
            raise NoCredentials("client_id and client_secret are required")
        if not client_id or not client_secret:
            raise AuthenticationError("client_id and client_secret are required")
        return self.auth.issue_token(client_id, client_secret, form.get("scope")).to_api()

    routes = (
        Route.of("GET", "/api/v2/tailnet/{tailnet}/devices", list_devices, DEVICES_READ),
        Route.of("PATCH", "/api/v2/tailnet/{tailnet}/device-attributes", patch_attributes, ATTRIBUTES_WRITE),
        Route.of("GET", "/api/v2/device/{device}", get_device, DEVICES_READ),
        Route.of("GET", "/api/v2/device/{device}/attributes", get_attributes, ATTRIBUTES_READ),
        Route.of("POST", "/api/v2/device/{device}/attributes/{key}", set_attribute, ATTRIBUTES_WRITE),
        Route.of("DELETE", "/api/v2/device/{device}/attributes/{key}", delete_attribute, ATTRIBUTES_WRITE),
        Route.of("POST", "/api/v2/oauth/token", issue_token, None),
    )


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


def route_labels(routes: Iterable[Route], *paths: str) -> Callable[[WSGIEnvironment], str]:
    """Metrics labels of the API's requests: the matching route template (``/api/v2/device/{device}``), else one
    of ``paths`` (``/healthz``, ``/metrics``) as is, else ``other`` — never a raw path (unbounded labels)."""
    patterns = list(routes)
    fixed = frozenset(paths)

    def label(environ: WSGIEnvironment) -> str:
        segments = path_segments(environ)
        for candidate in patterns:
            if candidate.match(segments) is not None:
                return "/" + "/".join(candidate.pattern)
        path = environ.get("PATH_INFO", "")
        return path if path in fixed else "other"

    return label
