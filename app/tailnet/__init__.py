"""The tailnet layer: one ``Tailnet`` interface, a built-in and a Tailscale adapter (chosen by ``app.bootstrap``)."""

from __future__ import annotations

from app.tailnet.models import Actor, AttributeSet, AttributeValue, AttributeWrite, Device
from app.tailnet.protocol import Tailnet

__all__ = ["Actor", "AttributeSet", "AttributeValue", "AttributeWrite", "Device", "Tailnet"]
