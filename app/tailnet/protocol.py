"""The one ``Tailnet`` interface both adapters implement."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from app.tailnet.models import Actor, AttributeChanges, AttributeSet, AttributeValue, AttributeWrite, Device


@runtime_checkable
class Tailnet(Protocol):
    """Devices and their posture attributes, on the built-in store or a real Tailscale tailnet.

    Every write takes the ``Actor`` who makes it: its namespaces bound what it may write, and its id is
    what the audit log records.
    """

    def list_devices(self) -> list[Device]:
        """Every device of the tailnet."""
        ...

    def get_device(self, device_id: str) -> Device:
        """One device by id or nodeId; ``DeviceNotFound`` if there is none."""
        ...

    def get_attributes(self, device_id: str) -> AttributeSet:
        """The device's live (unexpired) attributes and their expiries."""
        ...

    def set_attribute(
        self,
        device_id: str,
        key: str,
        value: AttributeValue,
        *,
        actor: Actor,
        expiry: object = None,
        comment: str | None = None,
    ) -> None:
        """Set one attribute, optionally expiring at ``expiry`` (an aware datetime)."""
        ...

    def delete_attribute(self, device_id: str, key: str, *, actor: Actor, comment: str | None = None) -> None:
        """Delete one attribute; ``NotFound`` if it is not set."""
        ...

    def set_many(self, changes: AttributeChanges, *, actor: Actor, comment: str | None = None) -> None:
        """Apply many sets and deletes (``None``) across devices at once."""
        ...

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
        """Record a write found on the tailnet whose writer died before recording it (audit, expiry tracking).

        Nothing is recorded when the write was already audited at or after ``since``; returns whether
        anything was recorded.
        """
        ...
