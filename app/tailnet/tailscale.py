"""The Tailscale adapter: the ``Tailnet`` interface over Tailscale's API v2.

Every key, value, expiry and comment is checked locally with the shared rules before anything is sent;
a real tailnet accepts only ``custom:`` keys through the API. Each successful write is audited in
accessbot's database afterwards, and expiries accessbot set are remembered (``RemoteExpiryRow``) so
``purge_expired`` can audit their passing.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from app.core.clock import Clock, utcnow
from app.core.errors import ConfigError
from app.core.http import Monotonic, RetryPolicy, Sleep
from app.core.timefmt import format_rfc3339, parse_rfc3339
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables import AuditEventRow
from app.tailnet import remote_expiry, rules
from app.tailnet.devicejson import device_from_api
from app.tailnet.errors import DeviceNotFound, NotFound, TailnetError
from app.tailnet.http import ApiKeyCredentials, Credentials, OAuthCredentials, RetryingSender, TailscaleClient
from app.tailnet.models import (
    CUSTOM_NAMESPACE,
    Actor,
    AttributeChanges,
    AttributeSet,
    AttributeValue,
    AttributeWrite,
    Device,
)

API_NAMESPACES = frozenset({CUSTOM_NAMESPACE})
"""The only namespace a real tailnet lets API clients write, whatever the actor."""

_DEVICE_ID = re.compile(r"[A-Za-z0-9]{1,64}")
"""Legacy numeric ids and nodeIds (``n292kg92CNTRL``) are both plain alphanumerics."""
_ALL = {"fields": "all"}


@dataclass(frozen=True, slots=True)
class _Change:
    device_id: str
    key: str
    write: AttributeWrite | None


def _unexpected(what: str) -> TailnetError:
    return TailnetError(f"Tailscale API returned an unexpected response: {what}", status=502)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _unexpected(f"{response.request.method} {response.request.url.path} is not JSON") from None


class TailscaleTailnet:
    """The ``Tailnet`` backed by a real Tailscale tailnet, reached over HTTPS with ``httpx``."""

    max_batch_devices = 100
    """Devices per batch ``PATCH`` a bulk writer (the EDR sync) should send."""

    def __init__(
        self,
        db: Database,
        *,
        api_url: str = "https://api.tailscale.com",
        tailnet: str = "-",
        api_key: SecretStr | str | None = None,
        oauth_client_id: str | None = None,
        oauth_client_secret: SecretStr | str | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        """``policy`` defaults to ``RetryPolicy()`` (45 s per call); ``monotonic`` measures its time budget."""
        self.db = db
        self.clock = clock
        self.tailnet = tailnet.strip() or "-"
        self._http = http_client or httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": "accessbot", "Accept": "application/json"},
        )
        sender = RetryingSender(self._http, policy=policy, sleep=sleep, rng=rng, clock=clock, monotonic=monotonic)
        credentials: Credentials
        if oauth_client_id and oauth_client_secret:
            credentials = OAuthCredentials(sender, oauth_client_id, _secret(oauth_client_secret), clock=clock)
        elif api_key:
            credentials = ApiKeyCredentials(_secret(api_key))
        else:
            raise ConfigError(
                "the Tailscale adapter needs TAILSCALE_API_KEY, or TAILSCALE_OAUTH_CLIENT_ID together with "
                "TAILSCALE_OAUTH_CLIENT_SECRET"
            )
        self.api = TailscaleClient(sender, credentials)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> TailscaleTailnet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- devices -------------------------------------------------------------------------------------

    def list_devices(self) -> list[Device]:
        """Every device of the tailnet, ordered by name."""
        response = self.api.request("GET", f"/api/v2/tailnet/{self._tailnet_segment()}/devices", params=_ALL)
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("devices"), list):
            raise _unexpected("the device list has no 'devices' array")
        devices = [device_from_api(item) for item in body["devices"]]
        return sorted(devices, key=lambda d: (d.name, d.id))

    def get_device(self, device_id: str) -> Device:
        """One device by id or nodeId; ``DeviceNotFound`` if there is none."""
        response = self.api.request("GET", self._device_path(device_id), params=_ALL, not_found=DeviceNotFound)
        return device_from_api(_json(response))

    # -- policy --------------------------------------------------------------------------------------

    def policy_text(self) -> str:
        """The tailnet policy file (``GET /api/v2/tailnet/{tailnet}/acl``; JSON, as the client accepts it),
        for "what will this unlock" when no ``policy_file`` is configured. Needs the ``policy_file:read`` scope."""
        response = self.api.request("GET", f"/api/v2/tailnet/{self._tailnet_segment()}/acl")
        return response.text

    # -- attributes ----------------------------------------------------------------------------------

    def get_attributes(self, device_id: str) -> AttributeSet:
        """The device's attributes and expiries, without any whose expiry has already passed."""
        response = self.api.request("GET", f"{self._device_path(device_id)}/attributes", not_found=DeviceNotFound)
        body = _json(response)
        if not isinstance(body, dict):
            raise _unexpected("the attributes are not a JSON object")
        attributes = body.get("attributes") or {}
        raw_expiries = body.get("expiries") or {}
        if not isinstance(attributes, dict) or not isinstance(raw_expiries, dict):
            raise _unexpected("'attributes' and 'expiries' must be JSON objects")
        now = self.clock()
        live: dict[str, AttributeValue] = {}
        expiries: dict[str, datetime] = {}
        for key, value in attributes.items():
            expiry = _parse_expiry(key, raw_expiries.get(key))
            if expiry is not None and expiry <= now:
                continue
            live[key] = value
            if expiry is not None:
                expiries[key] = expiry
        return AttributeSet(dict(sorted(live.items())), dict(sorted(expiries.items())))

    def set_attribute(
        self,
        device_id: str,
        key: str,
        value: AttributeValue,
        *,
        actor: Actor,
        expiry: datetime | None = None,
        comment: str | None = None,
    ) -> None:
        """Set one attribute with ``POST /device/{id}/attributes/{key}``; audit it once it succeeded."""
        comment = rules.validate_comment(comment)
        change = self._check(device_id, key, AttributeWrite(value, expiry), self.clock())
        assert change.write is not None
        body: dict[str, Any] = {"value": change.write.value, **_expiry_field(change.write)}
        if comment is not None:
            body["comment"] = comment
        self.api.request("POST", self._attribute_path(device_id, key), json=body, not_found=DeviceNotFound)
        self._record([change], actor, comment)

    def delete_attribute(self, device_id: str, key: str, *, actor: Actor, comment: str | None = None) -> None:
        """Delete one attribute; ``NotFound`` (with Tailscale's message) if the API answers 404."""
        comment = rules.validate_comment(comment)
        change = self._check(device_id, key, None, self.clock())
        try:
            self.api.request("DELETE", self._attribute_path(device_id, key), not_found=NotFound)
        except NotFound:
            with self.db.session() as session:  # gone remotely: audit a passed expiry, forget the rest
                now = self.clock()
                remote_expiry.expire(session, now, device_id, key)
                remote_expiry.forget(session, device_id, key)
            raise
        self._record([change], actor, comment)

    def set_many(self, changes: AttributeChanges, *, actor: Actor, comment: str | None = None) -> None:
        """Apply sets and deletes (``None``) across devices with one ``PATCH .../device-attributes``."""
        comment = rules.validate_comment(comment)
        now = self.clock()
        checked: list[_Change] = []
        batch_types: dict[str, tuple[str, str]] = {}
        for device_id, per_key in changes.items():
            for key, write in per_key.items():
                change = self._check(device_id, key, write, now)
                if change.write is not None:
                    kind = rules.value_type(change.write.value)
                    seen = batch_types.get(rules.fold_key(key))
                    if seen is not None:
                        rules.check_key_registry(key, kind, *seen)
                    batch_types[rules.fold_key(key)] = (key, kind)
                checked.append(change)
        if not checked:
            return
        nodes: dict[str, dict[str, Any]] = {}
        for change in checked:
            entry = None
            if change.write is not None:
                entry = {"value": change.write.value, **_expiry_field(change.write)}
            nodes.setdefault(change.device_id, {})[change.key] = entry
        body: dict[str, Any] = {"nodes": nodes}
        if comment is not None:
            body["comment"] = comment
        self.api.request("PATCH", f"/api/v2/tailnet/{self._tailnet_segment()}/device-attributes", json=body)
        self._record(checked, actor, comment)

    def adopt_write(
        self,
        device_id: str,
        key: str,
        write: AttributeWrite,
        *,
        actor: Actor,
        comment: str | None,
        since: datetime,
    ) -> bool:
        """Audit a write that reached Tailscale after its process recorded nothing (killed while the call
        returned), and track its expiry so the expiry is audited too. Idempotent: a write audited at or after
        ``since`` is left alone."""
        target = audit.attribute_target(device_id, key)
        with self.db.session() as session:
            seen = session.scalar(
                select(AuditEventRow.id)
                .where(
                    AuditEventRow.action == str(AuditAction.UPDATE_NODE_ATTRIBUTE),
                    AuditEventRow.target == target,
                    AuditEventRow.at >= since,
                )
                .limit(1)
            )
        if seen is not None:
            return False
        self._record([_Change(device_id, key, write)], actor, comment, recovered=True)
        return True

    def purge_expired(self) -> int:
        """Audit every expiry accessbot set that has now passed (at its expiry time); return how many."""
        with self.db.session() as session:
            return remote_expiry.expire(session, self.clock())

    # -- internals -----------------------------------------------------------------------------------

    def _check(self, device_id: str, key: str, write: AttributeWrite | None, now: datetime) -> _Change:
        """Apply the shared rules locally (raising ``RuleViolation``) before anything is sent."""
        self._device_path(device_id)
        namespace = rules.validate_key(key, API_NAMESPACES, max_length=rules.TAILSCALE_MAX_KEY_LENGTH)
        if write is not None:
            value = rules.validate_value(write.value, namespace)
            expiry = write.expiry
            if expiry is not None and expiry.tzinfo is not None:
                expiry = expiry.replace(microsecond=0)  # what RFC 3339 at second precision will send
            write = AttributeWrite(value, rules.validate_expiry(expiry, now))
        return _Change(device_id, key, write)

    def _tailnet_segment(self) -> str:
        return quote(self.tailnet, safe="")

    @staticmethod
    def _device_path(device_id: str) -> str:
        if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
            raise DeviceNotFound(f"{device_id!r} is not a Tailscale device id or nodeId")
        return f"/api/v2/device/{device_id}"

    def _attribute_path(self, device_id: str, key: str) -> str:
        return f"{self._device_path(device_id)}/attributes/{quote(key, safe=':')}"

    def _record(self, changes: list[_Change], actor: Actor, comment: str | None, *, recovered: bool = False) -> None:
        """After a successful call: audit each change and update ``RemoteExpiryRow`` in one transaction."""
        with self.db.session() as session:
            now = self.clock()
            for change in changes:
                remote_expiry.expire(session, now, change.device_id, change.key)  # an older expiry passed first
                write = change.write
                audit.record(
                    session,
                    at=now,
                    actor=actor.id,
                    action=AuditAction.UPDATE_NODE_ATTRIBUTE,
                    target=audit.attribute_target(change.device_id, change.key),
                    old=None,
                    new=write.value if write is not None else None,
                    expiry=write.expiry if write is not None else None,
                    comment=comment,
                    details={
                        "device_id": change.device_id,
                        "key": change.key,
                        "change": "set" if write is not None else "delete",
                        **({"recovered": True} if recovered else {}),
                    },
                )
                if write is not None and write.expiry is not None:
                    remote_expiry.remember(session, change.device_id, change.key, write.value, write.expiry)
                else:
                    remote_expiry.forget(session, change.device_id, change.key)


def _secret(value: SecretStr | str) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


def _expiry_field(write: AttributeWrite) -> dict[str, str]:
    return {"expiry": format_rfc3339(write.expiry)} if write.expiry is not None else {}


def _parse_expiry(key: str, raw: Any) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise _unexpected(f"the expiry of {key!r} is not a string")
    try:
        parsed = parse_rfc3339(raw)
    except ValueError as exc:
        raise _unexpected(f"the expiry of {key!r}: {exc}") from None
    return None if parsed.year == 1 else parsed
