"""Routes of the built-in HTTP API: path patterns, what a handler is given, and metrics labels of requests.

A route pattern such as ``/api/v2/device/{device}`` is both what a request is matched against and the label
its metrics carry, so ``route_labels`` lives here beside ``Route`` (a raw path would make labels unbounded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from wsgiref.types import WSGIEnvironment

from app.tailnet.api_requests import HttpError, Request, path_segments
from app.tailnet.auth import AuthStore, Principal
from app.tailnet.builtin import BuiltinTailnet


class ApiContext(Protocol):
    """What a handler may use: the built-in tailnet it serves and the credential store (the API application)."""

    @property
    def tailnet(self) -> BuiltinTailnet:
        """The tailnet the API serves."""
        ...

    @property
    def auth(self) -> AuthStore:
        """The API keys, OAuth clients and tokens."""
        ...


Handler = Callable[[ApiContext, Request, Principal | None], Any]
"""A handler gets the API, the request and who made it (``None`` on the token endpoint); its return is the JSON."""


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


def check_tailnet(api: ApiContext, request: Request) -> None:
    """404 unless the ``{tailnet}`` of the path is ``-`` or the served tailnet's name (case-insensitive)."""
    name = request.params["tailnet"]
    if name != "-" and name.casefold() != api.tailnet.name.casefold():
        raise HttpError(404, f"tailnet {name!r} not found")


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
