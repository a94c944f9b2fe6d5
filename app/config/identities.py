"""Validation of the identity-binding settings: ``identities`` (Slack user -> Tailscale login) and
``identity_domains`` (Slack email domain -> login domain). Resolution itself is ``app.access.identity``."""

from __future__ import annotations

import re

SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
LOGIN = re.compile(r"[^@\s]+@[^@\s]+")
"""A Tailscale login name: ``alice@example.com``, also ``alice@github`` or ``alice@passkey``."""
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def fold(login: str) -> str:
    """The comparison form of a login or email (Tailscale and Slack compare them case-insensitively)."""
    return login.strip().casefold()


def check_identities(value: dict[str, str]) -> dict[str, str]:
    """Keys: Slack user ids (kept as written) or emails (folded); values: Tailscale logins (folded)."""
    out: dict[str, str] = {}
    for key, login in value.items():
        if not (SLACK_USER.fullmatch(key) or EMAIL.fullmatch(key.strip())):
            raise ValueError(f"identities keys are Slack user ids (U…/W…) or emails; got {key!r}")
        if not isinstance(login, str) or not LOGIN.fullmatch(login.strip()):
            raise ValueError(f"identities[{key!r}] must be a Tailscale login like alice@example.com; got {login!r}")
        out[key if SLACK_USER.fullmatch(key) else fold(key)] = fold(login)
    return out


def check_domains(value: dict[str, str]) -> dict[str, str]:
    """Both sides are domain names (folded, without ``@``)."""
    out: dict[str, str] = {}
    for source, target in value.items():
        for name in (source, target):
            if not isinstance(name, str) or not DOMAIN.fullmatch(fold(name)):
                raise ValueError(f"identity_domains maps email domains like corp.example.com; got {name!r}")
        out[fold(source)] = fold(target)
    return out
