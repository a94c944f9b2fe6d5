"""Device handlers of the built-in HTTP API: list the tailnet's devices and read one, in Tailscale's JSON.

The list takes Tailscale's server-side filters (OpenAPI, ``GET /tailnet/{tailnet}/devices``, parameter
``<field>=<value> filters``): any query parameter but ``fields`` names a top-level device property and a value
it must match exactly; a list property (``tags``, ``addresses``) matches when it contains the value; several
parameters, or one repeated, are ANDed. The document lists no 400 answer for this endpoint, so a field no device
has (or a complex object such as ``clientConnectivity``, which it says is not supported) matches no device: the
answer is 200 with an empty list, never an error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from app.tailnet.api_requests import Request
from app.tailnet.api_routing import ApiContext, check_tailnet
from app.tailnet.auth import Principal
from app.tailnet.devicejson import device_to_api
from app.tailnet.errors import InvalidRequest

MAX_FILTERS = 50


def fields_all(request: Request) -> bool:
    """Whether ``?fields=all`` asks for every device field (Tailscale's default set otherwise)."""
    fields = request.query("fields")
    if fields in (None, "", "default"):
        return False
    if fields == "all":
        return True
    raise InvalidRequest(f"fields must be 'all' or 'default', not {fields!r}")


def device_filters(request: Request) -> list[tuple[str, str]]:
    """The ``<field>=<value>`` filters of a device list request (every query parameter but ``fields``)."""
    try:
        pairs = parse_qsl(request.environ.get("QUERY_STRING", ""), keep_blank_values=True, max_num_fields=MAX_FILTERS)
    except ValueError:
        raise InvalidRequest("the query string is malformed or too long") from None
    return [(field, value) for field, value in pairs if field != "fields"]


def _matches(value: Any, wanted: str) -> bool:
    """Whether one device property equals ``wanted`` as the query string spells it (exact match)."""
    if isinstance(value, bool):
        return wanted == ("true" if value else "false")
    if isinstance(value, int | float):
        return wanted == str(value)
    if isinstance(value, str):
        return value == wanted
    if isinstance(value, list):
        return any(not isinstance(item, dict | list) and _matches(item, wanted) for item in value)
    return False  # null or a complex object: not filterable


def matches_filters(device_json: dict[str, Any], filters: list[tuple[str, str]]) -> bool:
    """Whether a device (its ``fields=all`` JSON) passes every filter (logical AND)."""
    return all(field in device_json and _matches(device_json[field], wanted) for field, wanted in filters)


def list_devices(api: ApiContext, request: Request, _principal: Principal | None) -> Any:
    """``GET /api/v2/tailnet/{tailnet}/devices``, filtered server-side by ``<field>=<value>`` parameters."""
    check_tailnet(api, request)
    every_field = fields_all(request)
    filters = device_filters(request)
    out = []
    for device in api.tailnet.list_devices():
        if filters and not matches_filters(device_to_api(device, fields_all=True), filters):
            continue
        out.append(device_to_api(device, fields_all=every_field))
    return {"devices": out}


def get_device(api: ApiContext, request: Request, _principal: Principal | None) -> Any:
    """``GET /api/v2/device/{deviceId}``."""
    every_field = fields_all(request)
    return device_to_api(api.tailnet.get_device(request.params["device"]), fields_all=every_field)
