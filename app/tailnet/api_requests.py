"""Requests to the built-in HTTP API: path decoding, bounded bodies, JSON and form parsing, credentials.

Everything a handler reads from a request goes through here, so each refusal of a malformed request (a bad
escape, an oversized body, NUL in JSON, a broken ``Authorization`` header) is decided in one place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from wsgiref.types import WSGIEnvironment

from app.tailnet.errors import AuthenticationError, InvalidRequest, TailnetError

MAX_BODY_BYTES = 1 << 20


class NoCredentials(AuthenticationError):
    """No credentials were presented at all: a 401, but not a failed attempt (clients may await the challenge)."""


class HttpError(TailnetError):
    """An HTTP-level refusal (unknown route, wrong method, body too large) with optional headers."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message, status=status)
        self.headers = list(headers)


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
        user = basic_pair(value)[0]
        if user:
            return user
    raise AuthenticationError("unsupported Authorization header; use Basic or Bearer")


def basic_pair(value: str) -> tuple[str, str]:
    """The (user, password) of HTTP Basic credentials; ``AuthenticationError`` if they do not decode."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationError("malformed HTTP Basic credentials") from None
    user, _, password = decoded.partition(":")
    return user, password
