"""Signed Slack requests for end-to-end tests: payload builders (shapes of Slack's interaction payload
reference), signing, a small client.

Builders return the **raw request body** exactly as Slack sends it: ``payload=<url-encoded JSON>`` for
interactive payloads, a plain form for slash commands, JSON for Events API callbacks. ``sign`` produces
the headers Slack adds; ``SlackEventsClient`` posts a body to ``/slack/events`` signed (or deliberately
not) so tests can also send forged, stale and unsigned requests.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

TEAM_ID = "T0TEST"
TEAM_DOMAIN = "accessbot-test"
API_APP_ID = "A0TEST"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
# The legacy verification token Slack still puts in every payload (Bolt ignores it when signing is on).
VERIFICATION_TOKEN = "vErIfIcAtIoNtOkEn0123456"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

_ids = itertools.count(1)


def _next() -> int:
    return next(_ids)


def new_trigger_id(issued_at: float | None = None) -> str:
    """A fresh, unique trigger id shaped like Slack's (``"<n>.<team n>.<hex>"``).

    The first part is when it was issued (milliseconds since the epoch), so ``FakeSlackAPI`` can refuse it
    with ``expired_trigger_id`` 3 s later, as Slack does.
    """
    n = _next()
    issued_ms = int((time.time() if issued_at is None else issued_at) * 1000)
    return f"{issued_ms}.{5_432_109_876}.{hashlib.sha256(str(n).encode()).hexdigest()[:32]}"


def new_view_id() -> str:
    """A fresh view id (distinct from the ones ``FakeSlackAPI`` hands out)."""
    return f"VP{_next():08d}"


def new_action_ts() -> str:
    """An action timestamp: now, with microseconds, as Slack formats it."""
    return f"{time.time():.6f}"


def user_obj(user_id: str, username: str | None = None) -> dict[str, str]:
    """The ``user`` object of an interactive payload."""
    name = username or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def team_obj() -> dict[str, str]:
    """The ``team`` object of an interactive payload."""
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


# ----------------------------------------------------------------------------------------------------
# element states (the values inside ``view.state.values[block_id][action_id]``)
# ----------------------------------------------------------------------------------------------------


def option(value: str, text: str | None = None) -> dict[str, Any]:
    """An option object as Slack echoes it back in ``selected_option``."""
    return {"text": {"type": "plain_text", "text": text if text is not None else value, "emoji": True}, "value": value}


def text_input_state(value: str | None) -> dict[str, Any]:
    """State of a ``plain_text_input`` (``value`` is ``None`` when left empty)."""
    return {"type": "plain_text_input", "value": value}


def select_state(value: str | None, text: str | None = None, element_type: str = "static_select") -> dict[str, Any]:
    """State of a ``static_select`` / ``external_select`` / ``radio_buttons`` (``None``: nothing chosen)."""
    return {"type": element_type, "selected_option": option(value, text) if value is not None else None}


def users_select_state(user_id: str | None) -> dict[str, Any]:
    """State of a ``users_select``."""
    return {"type": "users_select", "selected_user": user_id}


def multi_users_select_state(user_ids: Iterable[str]) -> dict[str, Any]:
    """State of a ``multi_users_select``."""
    return {"type": "multi_users_select", "selected_users": list(user_ids)}


# ----------------------------------------------------------------------------------------------------
# views and bodies
# ----------------------------------------------------------------------------------------------------


def modal_view(
    *,
    view: dict[str, Any] | None = None,
    view_id: str | None = None,
    callback_id: str | None = None,
    private_metadata: str | None = None,
    state_values: dict[str, dict[str, Any]] | None = None,
    view_hash: str | None = None,
) -> dict[str, Any]:
    """The ``view`` object Slack puts in payloads from a modal.

    ``view`` is an optional base, e.g. a view the app opened (``FakeSlackAPI.view(view_id)``): its id,
    blocks, title, metadata and hash are kept unless overridden by the other arguments.
    """
    base = copy.deepcopy(view) if view else {}
    vid = view_id or base.get("id") or new_view_id()
    out: dict[str, Any] = {
        "id": vid,
        "team_id": TEAM_ID,
        "type": "modal",
        "blocks": [],
        "private_metadata": "",
        "callback_id": "",
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{_next():08d}",
        "title": {"type": "plain_text", "text": "accessbot", "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "previous_view_id": None,
        "root_view_id": vid,
        "app_id": API_APP_ID,
        "external_id": "",
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID,
    }
    out.update(base)
    out["id"] = vid
    if callback_id is not None:
        out["callback_id"] = callback_id
    if private_metadata is not None:
        out["private_metadata"] = private_metadata
    if state_values is not None:
        out["state"] = {"values": copy.deepcopy(state_values)}
    if view_hash is not None:
        out["hash"] = view_hash
    return out


def form_payload(payload: dict[str, Any]) -> str:
    """``payload=<url-encoded JSON>``: how every interactive payload travels."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})


def parse_body(body: str | bytes) -> dict[str, Any]:
    """Decode a body built here back to a dict (JSON, ``payload=`` form, or plain form)."""
    text = body.decode() if isinstance(body, bytes) else body
    if text.startswith("{"):
        return json.loads(text)
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if set(fields) == {"payload"}:
        return json.loads(fields["payload"])
    return fields


def global_shortcut(
    callback_id: str, user_id: str, trigger_id: str | None = None, *, username: str | None = None
) -> str:
    """A global shortcut (no channel)."""
    return form_payload(
        {
            "type": "shortcut",
            "token": VERIFICATION_TOKEN,
            "action_ts": new_action_ts(),
            "team": team_obj(),
            "user": user_obj(user_id, username),
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": trigger_id or new_trigger_id(),
        }
    )


def block_suggestion(
    action_id: str,
    block_id: str,
    value: str,
    user_id: str,
    view: dict[str, Any] | None = None,
    *,
    view_id: str | None = None,
    callback_id: str | None = None,
    private_metadata: str | None = None,
    state_values: dict[str, dict[str, Any]] | None = None,
) -> str:
    """An options request from an ``external_select`` in a modal; ``value`` is what the user typed."""
    v = modal_view(
        view=view,
        view_id=view_id,
        callback_id=callback_id,
        private_metadata=private_metadata,
        state_values=state_values,
    )
    return form_payload(
        {
            "type": "block_suggestion",
            "user": user_obj(user_id),
            "container": {"type": "view", "view_id": v["id"]},
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "action_id": action_id,
            "block_id": block_id,
            "value": value,
            "team": team_obj(),
            "enterprise": None,
            "is_enterprise_install": False,
            "view": v,
        }
    )


def view_submission(
    callback_id: str,
    user_id: str,
    state_values: dict[str, dict[str, Any]],
    private_metadata: str | None = None,
    view_id: str | None = None,
    *,
    view: dict[str, Any] | None = None,
    view_hash: str | None = None,
    trigger_id: str | None = None,
) -> str:
    """A modal submission. ``private_metadata`` defaults to the base ``view``'s, else ``""``."""
    v = modal_view(
        view=view,
        view_id=view_id,
        callback_id=callback_id,
        private_metadata=private_metadata,
        state_values=state_values,
        view_hash=view_hash,
    )
    return form_payload(
        {
            "type": "view_submission",
            "team": team_obj(),
            "user": user_obj(user_id),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": trigger_id or new_trigger_id(),
            "view": v,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
    )


def _action(
    action_type: str,
    action_id: str,
    block_id: str,
    *,
    value: str | None,
    selected_value: str | None,
    selected_text: str | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    action: dict[str, Any] = {"type": action_type, "action_id": action_id, "block_id": block_id}
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": action_id, "emoji": True}
        action["value"] = value if value is not None else ""
    elif action_type == "users_select":
        action["selected_user"] = selected_value
    elif selected_value is not None:
        action["selected_option"] = option(selected_value, selected_text)
    elif value is not None:
        action["value"] = value
    action.update(extra or {})
    action["action_ts"] = new_action_ts()
    return action


def _state_entry(action: dict[str, Any]) -> dict[str, Any] | None:
    """What Slack puts in ``state.values`` for an input-type element after the action."""
    keys = ("selected_option", "selected_user", "selected_users", "selected_options", "value", "selected_date_time")
    if action["type"] == "button":
        return None
    return {"type": action["type"], **{k: action[k] for k in keys if k in action}}


def block_actions_in_view(
    action_id: str,
    block_id: str,
    user_id: str,
    *,
    selected_value: str | None = None,
    selected_text: str | None = None,
    value: str | None = None,
    action_type: str | None = None,
    action_fields: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    view_id: str | None = None,
    callback_id: str | None = None,
    private_metadata: str | None = None,
    state_values: dict[str, dict[str, Any]] | None = None,
    view_hash: str | None = None,
    trigger_id: str | None = None,
) -> str:
    """An interaction with an element inside a modal (a select change, a button).

    ``action_type`` defaults to ``static_select`` when ``selected_value`` is given and ``button``
    otherwise. As Slack does, the new selection also appears in ``view.state.values``.
    """
    kind = action_type or ("static_select" if selected_value is not None else "button")
    action = _action(
        kind,
        action_id,
        block_id,
        value=value,
        selected_value=selected_value,
        selected_text=selected_text,
        extra=action_fields,
    )
    v = modal_view(
        view=view,
        view_id=view_id,
        callback_id=callback_id,
        private_metadata=private_metadata,
        state_values=state_values,
        view_hash=view_hash,
    )
    entry = _state_entry(action)
    if entry is not None:
        v["state"]["values"].setdefault(block_id, {})[action_id] = entry
    return form_payload(
        {
            "type": "block_actions",
            "user": user_obj(user_id),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": v["id"]},
            "trigger_id": trigger_id or new_trigger_id(),
            "team": team_obj(),
            "enterprise": None,
            "is_enterprise_install": False,
            "view": v,
            "actions": [action],
        }
    )


def _find_element(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]] | None:
    """The (block_id, element) of the interactive element ``action_id`` in message blocks."""
    for block in blocks:
        candidates = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id", "")), element
    return None


def block_actions_in_message(
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    message_ts: str,
    response_url: str = "https://hooks.slack.com/actions/T0TEST/1/abc",
    block_id: str | None = None,
    *,
    message: dict[str, Any] | None = None,
    trigger_id: str | None = None,
) -> str:
    """A button click in a message (e.g. Approve in an approver's DM).

    ``message`` is an optional stored message (``FakeSlackAPI.message(channel, ts)``): its text and blocks
    are echoed like Slack does, and the button's ``block_id``/``text``/``style`` are taken from it.
    """
    blocks = list((message or {}).get("blocks") or [])
    found = _find_element(blocks, action_id)
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or (found[0] if found else "actions"),
        "text": {"type": "plain_text", "text": action_id, "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": new_action_ts(),
    }
    if found:
        element = found[1]
        for key in ("text", "style", "confirm"):
            if key in element:
                action[key] = element[key]
    return form_payload(
        {
            "type": "block_actions",
            "user": user_obj(user_id),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": trigger_id or new_trigger_id(),
            "team": team_obj(),
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {
                "id": channel_id,
                "name": "directmessage" if channel_id.startswith("D") else channel_id.lower(),
            },
            "message": {
                "type": "message",
                "user": BOT_USER_ID,
                "ts": message_ts,
                "bot_id": BOT_ID,
                "app_id": API_APP_ID,
                "text": (message or {}).get("text", ""),
                "team": TEAM_ID,
                "blocks": blocks,
            },
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [action],
        }
    )


def slash_command(
    command: str,
    text: str,
    user_id: str,
    channel_id: str,
    response_url: str,
    trigger_id: str | None = None,
    *,
    username: str | None = None,
) -> str:
    """A slash command, as the plain form Slack posts."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": "directmessage" if channel_id.startswith("D") else channel_id.lower(),
            "user_id": user_id,
            "user_name": username or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": API_APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or new_trigger_id(),
        }
    )


def app_home_opened(user_id: str, *, view: dict[str, Any] | None = None, tab: str = "home") -> str:
    """An Events API ``event_callback`` for ``app_home_opened`` (a JSON body, not a form).

    ``view`` is the published home view, which Slack includes once the app has published one.
    """
    now = time.time()
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id,
        "tab": tab,
        "event_ts": f"{now:.6f}",
    }
    if view is not None:
        event["view"] = view
    return json.dumps(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "context_enterprise_id": None,
            "api_app_id": API_APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{_next():010d}",
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{_next():020d}",
        },
        separators=(",", ":"),
    )


# ----------------------------------------------------------------------------------------------------
# signing and sending
# ----------------------------------------------------------------------------------------------------


def _kind(raw: bytes) -> str:
    """The payload type of a body (for messages about it)."""
    try:
        parsed = parse_body(raw)
    except Exception:  # a deliberately malformed body
        return "request"
    return str(parsed.get("type") or parsed.get("command") or "request")


def content_type_of(body: str | bytes) -> str:
    """JSON for Events API bodies, form otherwise."""
    head = body[:1]
    return JSON if head in ("{", b"{") else FORM


def signature(secret: str, body: str | bytes, timestamp: int) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``"v0:{timestamp}:{body}"``."""
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign(
    secret: str, body: str | bytes, timestamp: int | None = None, *, content_type: str | None = None
) -> dict[str, str]:
    """The headers Slack sends with ``body``: signature, timestamp (default now) and content type."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Signature": signature(secret, body, ts),
        "X-Slack-Request-Timestamp": str(ts),
        "Content-Type": content_type or content_type_of(body),
    }


ACK_DEADLINE = 3.0
"""Seconds Slack waits for an app to acknowledge a request before it gives up on it (and shows an error)."""


class LateAck(AssertionError):
    """The app did not acknowledge within Slack's deadline: Slack would have given up on the request."""


class SlackEventsClient:
    """Posts raw bodies to the app's ``/slack/events`` as Slack would: signed unless told otherwise.

    Like Slack, it waits ``ack_deadline`` seconds for the answer and no longer: a later one raises
    ``LateAck`` (``None`` waits up to ``timeout``). ``settle`` is called after each answered post (the app's
    work after the acknowledgement), so tests read outcomes, not races; ``post(..., settle=False)`` skips it.
    """

    def __init__(
        self,
        base_url: str,
        signing_secret: str,
        *,
        path: str = "/slack/events",
        timeout: float = 10.0,
        ack_deadline: float | None = ACK_DEADLINE,
        settle: Callable[[], object] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.signing_secret = signing_secret
        self.ack_deadline = ack_deadline
        self.settle = settle
        self.late: list[tuple[str, float]] = []
        """(payload type, seconds) of every answer that came after the deadline."""
        read = timeout if ack_deadline is None else ack_deadline
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, read=read), trust_env=False)

    def post(
        self,
        body: str | bytes,
        content_type: str | None = None,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
        settle: bool = True,
    ) -> httpx.Response:
        """POST ``body``.

        ``timestamp`` signs with that time (stale requests); ``signature`` replaces the computed one
        (forged requests); ``signed=False`` sends neither header. ``content_type`` defaults from the body.
        """
        raw = body.encode() if isinstance(body, str) else body
        ctype = content_type or content_type_of(raw)
        sent: dict[str, str] = {"Content-Type": ctype}
        if signed:
            sent = sign(self.signing_secret, raw, timestamp, content_type=ctype)
            if signature is not None:
                sent["X-Slack-Signature"] = signature
        sent.update(headers or {})
        started = time.monotonic()
        try:
            response = self._http.post(self.base_url + self.path, content=raw, headers=sent)
        except httpx.ReadTimeout:
            elapsed = time.monotonic() - started
            self.late.append((_kind(raw), elapsed))
            raise LateAck(f"{_kind(raw)} not acknowledged within {self.ack_deadline} s: Slack gives up") from None
        elapsed = time.monotonic() - started
        if self.ack_deadline is not None and elapsed > self.ack_deadline:
            self.late.append((_kind(raw), elapsed))
            raise LateAck(
                f"{_kind(raw)} acknowledged after {elapsed:.2f} s (Slack gives up after {self.ack_deadline} s)"
            )
        if settle and self.settle is not None:
            self.settle()
        return response

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self._http.close()

    def __enter__(self) -> SlackEventsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
