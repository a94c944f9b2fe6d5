"""Device handlers of the built-in HTTP API: list the tailnet's devices and read one, in Tailscale's JSON."""

from __future__ import annotations

from typing import Any

from app.tailnet.api_requests import Request
from app.tailnet.api_routing import ApiContext, check_tailnet
from app.tailnet.auth import Principal
from app.tailnet.devicejson import device_to_api
from app.tailnet.errors import InvalidRequest


def fields_all(request: Request) -> bool:
    """Whether ``?fields=all`` asks for every device field (Tailscale's default set otherwise)."""
    fields = request.query("fields")
    if fields in (None, "", "default"):
        return False
    if fields == "all":
        return True
    raise InvalidRequest(f"fields must be 'all' or 'default', not {fields!r}")


def list_devices(api: ApiContext, request: Request, _principal: Principal | None) -> Any:
    """``GET /api/v2/tailnet/{tailnet}/devices``."""
    check_tailnet(api, request)
    every_field = fields_all(request)
    return {"devices": [device_to_api(d, fields_all=every_field) for d in api.tailnet.list_devices()]}


def get_device(api: ApiContext, request: Request, _principal: Principal | None) -> Any:
    """``GET /api/v2/device/{deviceId}``."""
    every_field = fields_all(request)
    return device_to_api(api.tailnet.get_device(request.params["device"]), fields_all=every_field)
