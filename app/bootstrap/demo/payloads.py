"""The interaction payloads Slack would send for the demo's clicks, as raw bodies, and Slack's request signature.

Shapes follow Slack's interaction payload reference (docs.slack.dev/reference/interaction-payloads): every
interactive payload travels as ``payload=<url-encoded JSON>``; the signature is ``v0=`` + hex HMAC-SHA256 of
``v0:<timestamp>:<body>`` with the signing secret (docs.slack.dev/authentication/verifying-requests-from-slack).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from app.bootstrap.demo.slack_standin import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to a request: signature, timestamp, content type."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Signature": f"v0={digest}",
        "X-Slack-Request-Timestamp": str(ts),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def _user(user_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID}


def _team() -> dict[str, str]:
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


def _common(user_id: str) -> dict[str, Any]:
    return {
        "user": _user(user_id),
        "team": _team(),
        "api_app_id": APP_ID,
        "is_enterprise_install": False,
        "enterprise": None,
    }


def global_shortcut(callback_id: str, user_id: str, trigger_id: str) -> bytes:
    """A global shortcut chosen from Slack's shortcut menu."""
    return _form(
        {
            "type": "shortcut",
            **_common(user_id),
            "callback_id": callback_id,
            "trigger_id": trigger_id,
            "action_ts": f"{time.time():.6f}",
        }
    )


def block_suggestion(view: dict[str, Any], block_id: str, action_id: str, typed: str, user_id: str) -> bytes:
    """An options load of an ``external_select`` in an open modal; ``typed`` is what the person typed."""
    return _form(
        {
            "type": "block_suggestion",
            **_common(user_id),
            "container": {"type": "view", "view_id": view["id"]},
            "block_id": block_id,
            "action_id": action_id,
            "value": typed,
            "view": view,
        }
    )


def view_submission(view: dict[str, Any], state_values: dict[str, Any], user_id: str, trigger_id: str) -> bytes:
    """The modal submitted with these input values."""
    submitted = copy.deepcopy(view)
    submitted["state"] = {"values": copy.deepcopy(state_values)}
    return _form(
        {
            "type": "view_submission",
            **_common(user_id),
            "trigger_id": trigger_id,
            "view": submitted,
            "response_urls": [],
        }
    )


def button_in_message(
    message: dict[str, Any],
    channel: str,
    block_id: str,
    button: dict[str, Any],
    user_id: str,
    *,
    trigger_id: str,
    response_url: str,
) -> bytes:
    """A click on ``button`` of a message the bot posted (``message`` as it stands in the channel)."""
    action = {
        "type": "button",
        "action_id": button["action_id"],
        "block_id": block_id,
        "text": button.get("text"),
        "value": button.get("value", ""),
        "action_ts": f"{time.time():.6f}",
    }
    if "style" in button:
        action["style"] = button["style"]
    return _form(
        {
            "type": "block_actions",
            **_common(user_id),
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
            "trigger_id": trigger_id,
            "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else channel.lower()},
            "message": {
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "team": TEAM_ID,
                "ts": message["ts"],
                "text": message.get("text", ""),
                "blocks": message.get("blocks", []),
            },
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [action],
        }
    )
