"""The token endpoint of the built-in HTTP API: OAuth's client-credentials grant.

It is the one route without authentication: the client's id and secret (form fields or HTTP Basic) are
its credentials, checked by ``AuthStore.issue_token``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from app.tailnet.api_requests import NoCredentials, Request, basic_pair
from app.tailnet.api_routing import ApiContext
from app.tailnet.auth import Principal
from app.tailnet.errors import AuthenticationError, InvalidRequest


def issue_token(api: ApiContext, request: Request, _principal: Principal | None) -> Any:
    """``POST /api/v2/oauth/token``: the client-credentials grant (form fields or HTTP Basic)."""
    form = request.form()
    grant = form.get("grant_type", "client_credentials")
    if grant != "client_credentials":
        raise InvalidRequest(f"unsupported grant_type {grant!r}; use client_credentials")
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    header = request.header("Authorization") or ""
    if not client_id and header[:6].lower() == "basic ":
        user, password = basic_pair(header[6:].strip())
        client_id, client_secret = unquote_plus(user), unquote_plus(password)
    if not client_id and not client_secret:
        raise NoCredentials("client_id and client_secret are required")
    if not client_id or not client_secret:
        raise AuthenticationError("client_id and client_secret are required")
    return api.auth.issue_token(client_id, client_secret, form.get("scope")).to_api()
