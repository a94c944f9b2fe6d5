"""The tailnet layer: one ``Tailnet`` interface, a built-in and a Tailscale adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.clock import Clock, utcnow
from app.tailnet.models import Actor, AttributeSet, AttributeValue, AttributeWrite, Device
from app.tailnet.protocol import Tailnet

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.db import Database


def make_tailnet(settings: Settings, db: Database, *, clock: Clock = utcnow) -> Tailnet:
    """Tailscale credentials present → the Tailscale adapter; otherwise the built-in store."""
    if settings.uses_tailscale:
        from app.tailnet.tailscale import TailscaleTailnet

        return TailscaleTailnet.from_settings(settings, db, clock=clock)
    from app.tailnet.builtin import BuiltinTailnet

    return BuiltinTailnet(db, clock=clock, name=settings.config.tailnet.name)


__all__ = [
    "Actor",
    "AttributeSet",
    "AttributeValue",
    "AttributeWrite",
    "Device",
    "Tailnet",
    "make_tailnet",
]
