"""A loopback fake of Entra ID's token endpoint and Microsoft Graph's Intune ``managedDevices`` list.

Written from VENDORS-MORE §2 (msgraph-sdk-python models, Graph throttling docs):

- ``POST /{tenant}/oauth2/v2.0/token`` (form ``grant_type=client_credentials``, ``client_id``, ``client_secret``,
  ``scope=<graph>/.default``) → 200 ``{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,
  "access_token"}``; a wrong secret → 401 ``{"error":"invalid_client","error_description":"AADSTS7000215: ..."}``;
  an unknown tenant → 400 ``invalid_request`` (AADSTS90002); a wrong scope → 400 ``invalid_scope``.
- ``GET /v1.0/deviceManagement/managedDevices?$select&$top`` → ``{"@odata.context","@odata.nextLink","value"}``;
  the nextLink carries ``$skiptoken``; the last page has no nextLink. ``$select`` trims the fields served.
  ``ethernetMacAddress`` is null in the list (as Graph does).
- Expired token → 401 ``{"error":{"code":"InvalidAuthenticationToken","message":"Lifetime validation failed, the
  token is expired."}}``; a missing or unknown one → 401 ``InvalidAuthenticationToken`` "Access token is empty." /
  "IDX14100: JWT is not well formed".
- Throttling (``rate_limit`` per ``rate_window``, Intune: 2000/20 s): 429 ``{"error":{"code":"TooManyRequests"}}``
  with ``Retry-After`` seconds, or without it when ``send_retry_after=False`` (some Intune routes omit it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from tests.fakes.oauth_vendor import Answer, Json, OAuthFakeVendor, Query, dumps

INTUNE_TENANT = "8f0e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
INTUNE_CLIENT_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
INTUNE_SECRET = "intune~test~secret~value~0123"
DEVICES = "/v1.0/deviceManagement/managedDevices"


def intune_device(i: int, serial: str | None = "", **overrides: Any) -> Json:
    """A managed device as Graph lists it; ``serial`` defaults to ``SER{i:07d}``."""
    device: Json = {
        "id": f"1f0c2d3e-4a5b-4c6d-8e7f-{i:012x}",
        "deviceName": f"LAPTOP-{i:05d}",
        "serialNumber": f"SER{i:07d}" if serial == "" else serial,
        "wiFiMacAddress": f"3c2c30{(i >> 16) & 255:02x}{(i >> 8) & 255:02x}{i & 255:02x}",
        "ethernetMacAddress": None,
        "lastSyncDateTime": "2026-11-30T08:41:10Z",
        "operatingSystem": "Windows",
        "osVersion": "10.0.26100.2314",
        "complianceState": "compliant",
        "azureADRegistered": True,
        "deviceRegistrationState": "registered",
        "isSupervised": False,
        "isEncrypted": True,
        "managedDeviceOwnerType": "company",
        "userPrincipalName": f"user{i}@example.com",
        "managementAgent": "mdm",
        "enrolledDateTime": "2026-01-05T10:00:00Z",
    }
    device.update(overrides)
    return device


class FakeIntune(OAuthFakeVendor):
    """Entra token endpoint and Graph managedDevices on one loopback server (give ``url`` as both login and
    Graph URL)."""

    name = "fake-intune"

    def __init__(
        self,
        devices: Iterable[Json] = (),
        *,
        tenant: str = INTUNE_TENANT,
        client_id: str = INTUNE_CLIENT_ID,
        client_secret: str = INTUNE_SECRET,
        token_ttl: float = 3599,
        page_size_default: int = 1000,
        page_size_max: int = 1000,
        rate_limit: int | None = None,
        rate_window: float = 20.0,
        send_retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            token_ttl=token_ttl,
            rate_limit=rate_limit,
            rate_window=rate_window,
            clock=clock,
        )
        self.tenant = tenant
        self.token_path = f"/{tenant}/oauth2/v2.0/token"
        self.page_size_default = page_size_default
        self.page_size_max = page_size_max
        self.send_retry_after = send_retry_after
        self._devices: list[Json] = list(devices)

    def set_devices(self, devices: Iterable[Json]) -> None:
        with self._lock:
            self._devices = list(devices)

    # -- vendor specifics ---------------------------------------------------------------------------------

    def _token(self, method: str, body: bytes, headers: dict[str, str]) -> Answer:
        from urllib.parse import parse_qsl

        form = dict(parse_qsl(body.decode(errors="replace")))
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return (
                400,
                dumps(
                    {
                        "error": "invalid_scope",
                        "error_description": "AADSTS1002012: The provided value for scope is not valid.",
                    }
                ),
                {},
            )
        return super()._token(method, body, headers)

    def _handle(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Answer:
        path = target.split("?", 1)[0]
        if path.endswith("/oauth2/v2.0/token") and path != self.token_path:
            with self._lock:
                self._arrivals += 1
            return (
                400,
                dumps(
                    {
                        "error": "invalid_request",
                        "error_description": f"AADSTS90002: Tenant '{path.split('/')[1]}' not found.",
                    }
                ),
                {},
            )
        return super()._handle(method, target, body, headers)

    def _token_answer(self, token: str, ttl: float) -> Answer:
        ttl_s = int(ttl)
        return (
            200,
            dumps({"token_type": "Bearer", "expires_in": ttl_s, "ext_expires_in": ttl_s, "access_token": token}),
            {},
        )

    def _token_refused(self) -> Answer:
        return (
            401,
            dumps(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                }
            ),
            {},
        )

    def _api_refused(self, *, expired: bool) -> Answer:
        message = "Lifetime validation failed, the token is expired." if expired else "Access token validation failure."
        return 401, self._error_body(401, message, code="InvalidAuthenticationToken"), {}

    def _rate_limited(self, wait: float) -> Answer:
        headers = {"Retry-After": str(math.ceil(wait))} if self.send_retry_after else {}
        return 429, self._error_body(429, "Too many requests", code="TooManyRequests"), headers

    def _error_body(self, status: int, message: str, code: str = "") -> bytes:
        code = code or {400: "BadRequest", 403: "Forbidden", 404: "ResourceNotFound", 503: "ServiceUnavailable"}.get(
            status, "UnknownError"
        )
        return dumps(
            {
                "error": {
                    "code": code,
                    "message": message,
                    "innerError": {"date": "2026-11-30T09:00:00", "request-id": "r-fake"},
                }
            }
        )

    def _serve(self, method: str, path: str, query: Query) -> Answer:
        if method != "GET" or path != DEVICES:
            return 404, self._error_body(404, "Resource not found for the segment."), {}
        params = dict(query)
        try:
            top = int(params.get("$top", str(self.page_size_default)))
            skip = int(params.get("$skiptoken", "0") or 0)
        except ValueError:
            return 400, self._error_body(400, "Invalid $top or $skiptoken"), {}
        if not top >= 1 or skip < 0:
            return 400, self._error_body(400, "Invalid $top"), {}
        top = min(top, self.page_size_max)
        select = [f for f in params.get("$select", "").split(",") if f]
        with self._lock:
            chunk = self._devices[skip : skip + top]
            more = skip + top < len(self._devices)
        if select:
            chunk = [{k: v for k, v in d.items() if k in select} for d in chunk]
        body: Json = {"@odata.context": f"{self.url}/v1.0/$metadata#deviceManagement/managedDevices"}
        if more:
            next_params = {k: v for k, v in params.items() if k != "$skiptoken"}
            next_params["$skiptoken"] = str(skip + top)
            body["@odata.nextLink"] = f"{self.url}{DEVICES}?{urlencode(next_params)}"
        body["value"] = chunk
        return 200, dumps(body), {}
