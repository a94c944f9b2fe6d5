"""Integrations as data: connect, change and remove EDR vendor accounts (no Slack, no CLI here).

One integration per vendor. Its fields come from the vendor's ``VendorSpec.fields``: secret ones are stored
encrypted (``app.core.crypto.Cipher``) in ``integrations.credentials``, the others in plain ``integrations.settings``.
The names of the secret fields that are set are kept in ``settings`` under ``ENCRYPTED_NAMES_KEY`` so they can be
shown without the key; ``Integration.settings`` and ``Integrations.credentials`` leave that entry out.

Per-integration sync options live in ``settings`` too, under keys starting with ``_`` that no vendor field
has: ``MAX_AGENT_AGE_KEY`` (seconds; absent = off), the freshness limit of ``app.vendors.plan``. They are not
vendor settings: ``Integration.settings`` and ``Integrations.credentials`` leave them out.

Adding or changing an integration sets ``sync_requested_at``: the sync engine (``app.vendors.sync``) picks
that up and syncs it at once. Audit events name the secret fields that were set or changed, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.clock import Clock, utcnow
from app.core.crypto import Cipher, CipherError
from app.core.timefmt import format_duration, format_rfc3339, parse_duration
from app.db import Database, audit
from app.db.audit import AuditAction
from app.db.tables.vendors import IntegrationRow
from app.vendors.base import CredentialField, VendorClient, VendorSpec
from app.vendors.registry import REGISTRY, VendorRegistry

ENCRYPTED_NAMES_KEY = "_secret_fields"
"""Entry of ``integrations.settings`` listing the names of the secret fields that are set."""
MAX_AGENT_AGE_KEY = "_max_agent_age"
"""Entry of ``integrations.settings``: the integration's ``max_agent_age`` in seconds (absent: no limit)."""
MIN_AGENT_AGE = timedelta(hours=1)
"""The shortest ``max_agent_age``: agents check in every few minutes to hours and a sync runs every 15 minutes,
so a shorter limit would mark healthy agents stale."""
_OFF = frozenset({"off", "none", "0"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IntegrationError(Exception):
    """Bad input, an unknown vendor, or a vendor that is (not) connected; ``message`` is fit to show an admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Integration:
    """One connected vendor account as shown to admins: settings and the NAMES of its secrets, never their values."""

    id: int
    vendor: str
    label: str
    settings: dict[str, str]
    secret_fields: tuple[str, ...]
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    paused_until: datetime | None = None
    pause_reason: str | None = None
    sync_requested_at: datetime | None = None
    last_sync_started_at: datetime | None = None
    last_sync_finished_at: datetime | None = None
    last_success_at: datetime | None = None
    last_result: str | None = None
    last_error: str | None = None
    last_report: dict[str, Any] = field(default_factory=dict)
    max_agent_age: timedelta | None = None
    """Agents not seen within it write no posture, only a stale marker (``app.vendors.plan``); ``None``: off."""

    def paused(self, now: datetime) -> bool:
        """Whether syncing is paused at ``now`` (after an authentication failure)."""
        return self.paused_until is not None and self.paused_until > now

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in RFC 3339, ``None`` when unset)."""

        def when(moment: datetime | None) -> str | None:
            return format_rfc3339(moment) if moment is not None else None

        return {
            "vendor": self.vendor,
            "label": self.label,
            "settings": dict(self.settings),
            "secret_fields": list(self.secret_fields),
            "created_at": when(self.created_at),
            "created_by": self.created_by,
            "updated_at": when(self.updated_at),
            "updated_by": self.updated_by,
            "paused_until": when(self.paused_until),
            "pause_reason": self.pause_reason,
            "sync_requested_at": when(self.sync_requested_at),
            "last_sync_started_at": when(self.last_sync_started_at),
            "last_sync_finished_at": when(self.last_sync_finished_at),
            "last_success_at": when(self.last_success_at),
            "last_result": self.last_result,
            "last_error": self.last_error,
            "last_report": dict(self.last_report),
            "max_agent_age": format_duration(self.max_agent_age) if self.max_agent_age is not None else None,
        }


def target(vendor_id: str) -> str:
    """The audit target of an integration: ``integration/<vendor>``."""
    return f"integration/{vendor_id}"


def vendor_spec(vendor_id: str, vendors: VendorRegistry = REGISTRY) -> VendorSpec:
    """The spec of ``vendor_id`` (any case); ``IntegrationError`` listing the known vendor ids otherwise."""
    try:
        return vendors.vendor(vendor_id)
    except KeyError:
        known = ", ".join(vendors) or "none are installed"
        raise IntegrationError(f"unknown vendor {vendor_id.strip()!r}; known vendors: {known}") from None


def is_url_field(spec_field: CredentialField) -> bool:
    """URL fields are named ``url`` or ``*_url``; their values must be http(s) URLs."""
    return spec_field.name == "url" or spec_field.name.endswith("_url")


def _describe(spec_field: CredentialField) -> str:
    return f"'{spec_field.name}' ({spec_field.label})" if spec_field.label else f"'{spec_field.name}'"


def _check_url(spec_field: CredentialField, value: str) -> str:
    shown = "" if spec_field.secret else f", not {value!r}"
    problem = f"field {_describe(spec_field)} must be an http(s) URL such as https://example.com{shown}"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise IntegrationError(problem) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or " " in value:
        raise IntegrationError(problem)
    if parts.username is not None or parts.password is not None:
        raise IntegrationError(f"field {_describe(spec_field)} must not contain a user name or password")
    return value.rstrip("/")


def validate(spec: VendorSpec, values: Mapping[str, str], *, partial: bool) -> dict[str, str | None]:
    """Check ``values`` against ``spec.fields``; stripped values by field name.

    ``partial`` (an update): required fields may be left out, and an empty value of an optional field
    means "clear it" (``None``). Otherwise every required field must be given and no value may be empty.
    """
    fields = {f.name: f for f in spec.fields}
    clean: dict[str, str | None] = {}
    for raw_name, raw_value in values.items():
        name = raw_name.strip()
        spec_field = fields.get(name)
        if spec_field is None:
            raise IntegrationError(
                f"unknown field {name!r} for {spec.label}; its fields are: {', '.join(fields) or 'none'}"
            )
        if not isinstance(raw_value, str):
            raise IntegrationError(f"field {_describe(spec_field)} must be text")
        value = raw_value.strip()
        if not value:
            if partial and not spec_field.required:
                clean[name] = None
                continue
            raise IntegrationError(f"field {_describe(spec_field)} is empty")
        if _CONTROL.search(value):
            raise IntegrationError(f"field {_describe(spec_field)} contains control characters")
        clean[name] = _check_url(spec_field, value) if is_url_field(spec_field) else value
    if not partial:
        missing = [f for f in spec.fields if f.required and f.name not in clean]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise IntegrationError(
                f"missing required field{plural} {', '.join(_describe(f) for f in missing)} for {spec.label}"
            )
    return clean


def parse_max_agent_age(text: str) -> timedelta | None:
    """``7d``, ``12h``, ``1d12h`` → a duration (at least ``MIN_AGENT_AGE``); ``off``/``none``/``0`` → ``None``."""
    cleaned = text.strip().lower()
    if cleaned in _OFF:
        return None
    try:
        age = parse_duration(cleaned)
    except ValueError as exc:
        raise IntegrationError(f"max agent age: {exc}, or 'off'") from None
    if age < MIN_AGENT_AGE:
        raise IntegrationError(
            f"max agent age {text.strip()!r} is shorter than {format_duration(MIN_AGENT_AGE)}: agents check in "
            "every few minutes to hours, so healthy agents would count as stale; use e.g. 1d or 7d"
        )
    return age


class Integrations:
    """Add, update, remove and read integrations; every change is audited in the same transaction.

    ``vendors``: the vendors integrations can be made for (tests pass their own).
    """

    def __init__(
        self, db: Database, cipher: Cipher, *, clock: Clock = utcnow, vendors: VendorRegistry = REGISTRY
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self.vendors = vendors

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, vendor_id: str) -> Integration:
        """The integration of ``vendor_id``; ``IntegrationError`` if unknown or not connected."""
        with self._db.session() as session:
            return self._integration(self._row(session, vendor_id))

    def list(self) -> list[Integration]:
        """Every integration, by vendor id."""
        with self._db.session() as session:
            rows = session.scalars(select(IntegrationRow).order_by(IntegrationRow.vendor)).all()
            return [self._integration(row) for row in rows]

    def credentials(self, vendor_id: str) -> dict[str, str]:
        """Decrypted secrets and settings merged: what ``spec.build`` takes. ``CipherError`` on a wrong key."""
        with self._db.session() as session:
            row = self._row(session, vendor_id)
            settings, token = _public(row.settings), row.credentials
        return {**settings, **self._cipher.decrypt(token)}

    def client(self, vendor_id: str) -> VendorClient:
        """A client of the vendor account, built from the stored credentials (``IntegrationError`` if unusable)."""
        spec = self._spec(vendor_id)
        values = self.credentials(spec.id)
        try:
            return spec.build(values)
        except ValueError as exc:
            raise IntegrationError(f"the stored {spec.label} settings cannot be used: {exc}") from None

    # -- changing ---------------------------------------------------------------------------------------

    def add(self, vendor_id: str, values: Mapping[str, str], *, actor: str) -> Integration:
        """Connect a vendor account and request a sync; ``IntegrationError`` if invalid or already connected."""
        spec = self._spec(vendor_id)
        clean = {name: value for name, value in validate(spec, values, partial=False).items() if value is not None}
        secrets, settings = _split(spec, clean)
        now = self._clock()
        try:
            with self._db.session() as session:
                if session.scalar(select(IntegrationRow.id).where(IntegrationRow.vendor == spec.id)) is not None:
                    raise IntegrationError(self._already(spec))
                row = IntegrationRow(
                    vendor=spec.id,
                    settings={**settings, ENCRYPTED_NAMES_KEY: list(secrets)},
                    credentials=self._cipher.encrypt(secrets),
                    created_at=now,
                    created_by=actor,
                    updated_at=now,
                    updated_by=actor,
                    sync_requested_at=now,
                    last_report={},
                )
                session.add(row)
                audit.record(
                    session,
                    at=now,
                    actor=actor,
                    action=AuditAction.CREATE_POSTURE_INTEGRATION,
                    target=target(spec.id),
                    new={"settings": settings, "secret_fields": list(secrets)},
                )
                session.flush()
                return self._integration(row)
        except IntegrityError:  # another process connected the same vendor meanwhile
            raise IntegrationError(self._already(spec)) from None

    def update(self, vendor_id: str, values: Mapping[str, str], *, actor: str) -> Integration:
        """Change the given fields only and request a sync; a changed value lifts an authentication pause.

        If the stored secrets cannot be decrypted (the key changed), the update succeeds only when it gives
        every secret field anew.
        """
        spec = self._spec(vendor_id)
        clean = validate(spec, values, partial=True)
        if not clean:
            raise IntegrationError(f"nothing to update for {spec.label}: give at least one field")
        secret_names = [f.name for f in spec.fields if f.secret]
        now = self._clock()
        with self._db.session() as session:
            row = self._row(session, spec.id)
            old_settings = _public(row.settings)
            try:
                old_secrets = self._cipher.decrypt(row.credentials)
            except CipherError as exc:
                replaced = [name for name in secret_names if clean.get(name)]
                stored = set(_secret_names(row.settings))
                needed = [f.name for f in spec.fields if f.secret and (f.required or f.name in stored)]
                if set(needed) - set(replaced):
                    raise CipherError(
                        f"{exc.message} To replace the stored secrets, give all of them: {', '.join(needed)}"
                    ) from None
                old_secrets = {}
            new_settings, new_secrets = dict(old_settings), dict(old_secrets)
            for name, value in clean.items():
                store = new_secrets if name in secret_names else new_settings
                if value is None:
                    store.pop(name, None)
                else:
                    store[name] = value
            changed_secrets = [name for name in secret_names if new_secrets.get(name) != old_secrets.get(name)]
            if changed_secrets or new_settings != old_settings:
                row.paused_until = None
                row.pause_reason = None
            set_names = [name for name in secret_names if name in new_secrets]
            row.settings = {**new_settings, **_options(row.settings), ENCRYPTED_NAMES_KEY: set_names}
            row.credentials = self._cipher.encrypt(new_secrets)
            row.updated_at = now
            row.updated_by = actor
            row.sync_requested_at = now
            audit.record(
                session,
                at=now,
                actor=actor,
                action=AuditAction.UPDATE_POSTURE_INTEGRATION,
                target=target(spec.id),
                old={"settings": old_settings},
                new={"settings": new_settings, "changed_secret_fields": changed_secrets},
            )
            session.flush()
            return self._integration(row)

    def set_max_agent_age(self, vendor_id: str, age: timedelta | None, *, actor: str) -> Integration:
        """Set (``None``: turn off) how recently an agent must have checked in to write posture; audited, and a
        sync is requested so the change shows at once."""
        if age is not None and age < MIN_AGENT_AGE:
            raise IntegrationError(f"max agent age must be at least {format_duration(MIN_AGENT_AGE)}")
        now = self._clock()
        with self._db.session() as session:
            row = self._row(session, vendor_id)
            old = _max_agent_age(row.settings)
            settings = {k: v for k, v in (row.settings or {}).items() if k != MAX_AGENT_AGE_KEY}
            if age is not None:
                settings[MAX_AGENT_AGE_KEY] = int(age.total_seconds())
            row.settings = settings
            row.updated_at = now
            row.updated_by = actor
            row.sync_requested_at = now
            audit.record(
                session,
                at=now,
                actor=actor,
                action=AuditAction.UPDATE_POSTURE_INTEGRATION,
                target=target(row.vendor),
                old={"max_agent_age": format_duration(old) if old is not None else None},
                new={"max_agent_age": format_duration(age) if age is not None else None},
            )
            session.flush()
            return self._integration(row)

    def remove(self, vendor_id: str, *, actor: str) -> Integration:
        """Disconnect a vendor account (its sync state goes with it); returns what was removed."""
        now = self._clock()
        with self._db.session() as session:
            row = self._row(session, vendor_id)
            removed = self._integration(row)
            session.delete(row)
            audit.record(
                session,
                at=now,
                actor=actor,
                action=AuditAction.REMOVE_POSTURE_INTEGRATION,
                target=target(removed.vendor),
                old={"settings": removed.settings, "secret_fields": list(removed.secret_fields)},
            )
        return removed

    # -- helpers ----------------------------------------------------------------------------------------

    def _spec(self, vendor_id: str) -> VendorSpec:
        return vendor_spec(vendor_id, self.vendors)

    @staticmethod
    def _already(spec: VendorSpec) -> str:
        return f"{spec.label} is already connected; use update to change its settings or credentials"

    def _row(self, session: Session, vendor_id: str) -> IntegrationRow:
        vendor = vendor_id.strip().lower()
        row = session.scalar(select(IntegrationRow).where(IntegrationRow.vendor == vendor))
        if row is not None:
            return row
        spec = self._spec(vendor)  # an unknown vendor is reported as such
        raise IntegrationError(f"{spec.label} is not connected; add it first")

    def _integration(self, row: IntegrationRow) -> Integration:
        spec = self.vendors.get(row.vendor)
        return Integration(
            id=row.id,
            vendor=row.vendor,
            label=spec.label if spec is not None else row.vendor,
            settings=_public(row.settings),
            secret_fields=tuple(_secret_names(row.settings)),
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            paused_until=row.paused_until,
            pause_reason=row.pause_reason,
            sync_requested_at=row.sync_requested_at,
            last_sync_started_at=row.last_sync_started_at,
            last_sync_finished_at=row.last_sync_finished_at,
            last_success_at=row.last_success_at,
            last_result=row.last_result,
            last_error=row.last_error,
            last_report=dict(row.last_report or {}),
            max_agent_age=_max_agent_age(row.settings),
        )


def _split(spec: VendorSpec, values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(secrets, settings) in field order."""
    secrets = {f.name: values[f.name] for f in spec.fields if f.secret and f.name in values}
    settings = {f.name: values[f.name] for f in spec.fields if not f.secret and f.name in values}
    return secrets, settings


def _public(settings: Mapping[str, Any] | None) -> dict[str, str]:
    """The row's vendor settings: without the bookkeeping entry and the sync options."""
    return {k: v for k, v in (settings or {}).items() if k not in (ENCRYPTED_NAMES_KEY, MAX_AGENT_AGE_KEY)}


def _options(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row's sync options (kept as they are when vendor fields change)."""
    return {k: v for k, v in (settings or {}).items() if k == MAX_AGENT_AGE_KEY}


def _max_agent_age(settings: Mapping[str, Any] | None) -> timedelta | None:
    seconds = (settings or {}).get(MAX_AGENT_AGE_KEY)
    return timedelta(seconds=seconds) if isinstance(seconds, int) and seconds > 0 else None


def _secret_names(settings: Mapping[str, Any] | None) -> list[str]:
    names = (settings or {}).get(ENCRYPTED_NAMES_KEY) or []
    return [str(name) for name in names]
