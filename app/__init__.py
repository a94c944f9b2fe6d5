"""accessbot: just-in-time Tailscale access from Slack, with EDR posture sync."""

__version__ = "0.1.0"
