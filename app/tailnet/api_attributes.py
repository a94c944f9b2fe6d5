"""Posture attribute handlers of the built-in HTTP API: read, set and delete one, or patch many at once.

Each handler only parses the request into the tailnet's terms (values, expiries, comments); the rules
themselves are checked by the tailnet, so the API and every other writer refuse the same things.
"""

from __future__ import annotations

from typing import Any

from app.tailnet import rules
from app.tailnet.api_requests import Request
from app.tailnet.api_routing import ApiContext, check_tailnet
from app.tailnet.auth import Principal
from app.tailnet.errors import InvalidRequest, NotFound
from app.tailnet.models import AttributeChanges, AttributeWrite


def get_attributes(api: ApiContext, request: Request, _principal: Principal | None) -> Any:
    """``GET /api/v2/device/{deviceId}/attributes``."""
    return api.tailnet.get_attributes(request.params["device"]).to_api()


def set_attribute(api: ApiContext, request: Request, principal: Principal | None) -> Any:
    """``POST /api/v2/device/{deviceId}/attributes/{key}``."""
    assert principal is not None
    body = request.json_object()
    if "value" not in body:
        raise InvalidRequest('the request body needs a "value"')
    expiry = rules.parse_expiry_field(body.get("expiry"))
    comment = rules.validate_comment(body.get("comment"))
    api.tailnet.set_attribute(
        request.params["device"],
        request.params["key"],
        body["value"],
        actor=principal.actor,
        expiry=expiry,
        comment=comment,
    )
    return {}


def delete_attribute(api: ApiContext, request: Request, principal: Principal | None) -> Any:
    """``DELETE /api/v2/device/{deviceId}/attributes/{key}`` (an optional body may carry a comment).

    Deleting an attribute that is not set (never was, or already expired) succeeds with 200 and changes nothing:
    Tailscale's OpenAPI document gives this operation only ``200`` and ``404 Device not found`` (no "attribute
    not found"), and its batch form is a JSON merge patch, where ``null`` for an absent key is a no-op. An unknown
    device is still 404, and the key is still checked (a key nobody may write is 400)."""
    assert principal is not None
    comment = rules.validate_comment(request.json_object(optional=True).get("comment"))
    try:
        api.tailnet.delete_attribute(
            request.params["device"], request.params["key"], actor=principal.actor, comment=comment
        )
    except NotFound:  # the attribute; an unknown device is DeviceNotFound, answered 404
        return {}
    return {}


def patch_attributes(api: ApiContext, request: Request, principal: Principal | None) -> Any:
    """``PATCH /api/v2/tailnet/{tailnet}/device-attributes``: all changes or none."""
    assert principal is not None
    check_tailnet(api, request)
    body = request.json_object()
    changes = _changes(body.get("nodes"))
    comment = rules.validate_comment(body.get("comment"))
    api.tailnet.set_many(changes, actor=principal.actor, comment=comment)
    return {}


def _changes(nodes: object) -> AttributeChanges:
    """``{deviceId: {key: {"value": ..., "expiry": ...} | null}}`` as tailnet changes, else ``InvalidRequest``."""
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
    return changes
