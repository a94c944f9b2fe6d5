"""The composition root: ``build(settings) -> Services`` wires every service of a process (see ``services.py``)."""

from app.bootstrap.from_settings import (
    ListenerOptions,
    SlackOptions,
    cipher_for,
    configured_policy_path,
    database,
    tailnet_for,
    tailscale_tailnet,
)
from app.bootstrap.services import Services, build

__all__ = [
    "ListenerOptions",
    "Services",
    "SlackOptions",
    "build",
    "cipher_for",
    "configured_policy_path",
    "database",
    "tailnet_for",
    "tailscale_tailnet",
]
