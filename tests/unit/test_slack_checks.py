"""The scopes ``doctor`` compares with are the ones ``manifest.yml`` asks for, and Slack's header is read right."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.slack.checks import BOT_SCOPES, CHECK_SCOPES, granted_scopes
from tests.fakes.slack_api import DEFAULT_SCOPES

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"


def test_the_manifest_asks_for_exactly_the_scopes_doctor_checks() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    asked = manifest["oauth_config"]["scopes"]["bot"]
    assert sorted(asked) == sorted(BOT_SCOPES + CHECK_SCOPES)
    assert sorted(DEFAULT_SCOPES) == sorted(asked)  # the fake's token is installed from the manifest


def test_granted_scopes_from_the_header() -> None:
    assert granted_scopes({"X-OAuth-Scopes": "commands, chat:write,,users:read"}) == {
        "commands",
        "chat:write",
        "users:read",
    }
    assert granted_scopes({"x-oauth-scopes": ["commands,im:write"]}) == {"commands", "im:write"}
    assert granted_scopes({"x-oauth-scopes": ""}) == frozenset()
    assert granted_scopes({"content-type": "application/json"}) is None
    assert granted_scopes(None) is None
