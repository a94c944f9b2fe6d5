"""Malformed Slack requests are answered 400 before Bolt dispatches them.

Slack sends well-formed payloads (FACTS §5). A body that does not parse, or a payload whose fields have the wrong
JSON types where Bolt's own middleware and accessbot's listeners rely on them (``user``, ``actions``,
``view.state.values``, ...), is refused with a 400 ``{"message": ...}`` and a WARNING naming what is wrong — never
the values, which may hold credentials (the connect form). The check runs before Bolt's (which also parses before
it verifies the signature), since Bolt's built-in middleware itself fails on such payloads; it only ever refuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request import BoltRequest

log = logging.getLogger(__name__)

INTERACTIVE = frozenset({"block_actions", "block_suggestion", "view_submission", "view_closed", "shortcut"})
"""Payload types that always carry ``user`` as an object."""
WITH_TRIGGER = frozenset({"block_actions", "shortcut", "message_action"})


def bad_request(message: str) -> BoltResponse:
    """A 400 with a JSON ``{"message": ...}`` body."""
    return BoltResponse(status=400, body=json.dumps({"message": message}), headers={"content-type": "application/json"})


class SlackEventsHandler(SlackRequestHandler):
    """Bolt's WSGI handler, answering 400 to a malformed body instead of failing with a 500 (or worse, half-way)."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        """Parse the request as Bolt does and check its shape; a 400 if either fails, else Bolt's answer."""
        try:
            raw = request.get_body()
            bolt_request = BoltRequest(body=raw, query=request.query_string, headers=request.get_headers())
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            log.warning("refused a Slack request whose body does not parse (%s)", type(exc).__name__)
            return bad_request("the request body is not a Slack payload")
        problem = payload_problem(bolt_request.body)
        if problem is not None:
            kind = bolt_request.body.get("type") if isinstance(bolt_request.body, dict) else None
            log.warning("refused a malformed Slack payload (type %s): %s", str(kind)[:40], problem)
            return bad_request(f"malformed Slack payload: {problem}")
        return self.app.dispatch(bolt_request)


def payload_problem(body: Any) -> str | None:
    """What is wrong with the shape of a parsed Slack payload, or ``None``. Names paths, never values."""
    if not isinstance(body, dict):
        return "the payload is not an object"
    checks: list[tuple[str, Any, Callable[[Any], bool], str]] = [
        ("type", body.get("type"), _optional(str), "text"),
        ("trigger_id", body.get("trigger_id"), _optional(str), "text"),
        ("response_url", body.get("response_url"), _optional(str), "text"),
        ("channel", body.get("channel"), _optional(dict), "an object"),
        ("container", body.get("container"), _optional(dict), "an object"),
        ("message", body.get("message"), _optional(dict), "an object"),
        ("view", body.get("view"), _optional(dict), "an object"),
    ]
    kind = body.get("type")
    if kind in INTERACTIVE:
        checks.append(("user", body.get("user"), _object_with_id, "an object with an id"))
    if kind in WITH_TRIGGER:
        checks.append(("trigger_id", body.get("trigger_id"), _text, "text"))
    if kind in ("view_submission", "view_closed"):
        checks.append(("view", body.get("view"), _is(dict), "an object"))
    if kind == "block_suggestion":
        checks.append(("value", body.get("value"), _optional(str), "text"))
    if kind == "block_actions":
        checks.append(("actions", body.get("actions"), _actions, "a list of actions with an action_id"))
    if "command" in body:
        checks.append(("command", body.get("command"), _text, "text"))
        checks.append(("user_id", body.get("user_id"), _text, "text"))
        checks.append(("trigger_id", body.get("trigger_id"), _text, "text"))
        checks.append(("text", body.get("text"), _optional(str), "text"))
    if kind == "event_callback":
        checks.append(("event", body.get("event"), _event, "an object with a type (and a user for app_home_opened)"))
    for path, value, ok, expected in checks:
        if not ok(value):
            return f"{path} must be {expected}"
    if isinstance(body.get("channel"), dict) and not _optional(str)(body["channel"].get("id")):
        return "channel.id must be text"
    view = body.get("view")
    return _view_problem(view) if isinstance(view, dict) else None


def _view_problem(view: dict[str, Any]) -> str | None:
    for field in ("id", "callback_id", "private_metadata", "hash"):
        if not _optional(str)(view.get(field)):
            return f"view.{field} must be text"
    if not _optional(list)(view.get("blocks")) or not all(isinstance(b, dict) for b in view.get("blocks") or []):
        return "view.blocks must be a list of objects"
    if "state" not in view:
        return None
    state = view["state"]
    if not isinstance(state, dict) or not _optional(dict)(state.get("values")):
        return "view.state must be an object with values"
    for block_id, actions in (state.get("values") or {}).items():
        if not isinstance(actions, dict):
            return "view.state.values must map block ids to objects"
        for element in actions.values():
            problem = _element_problem(element)
            if problem:
                return f"view.state.values[{str(block_id)[:40]!r}]: {problem}"
    return None


def _element_problem(element: Any) -> str | None:
    """FACTS §5 ELEMENT_STATE: each field, when present, of the type Slack sends."""
    if not isinstance(element, dict):
        return "an element state must be an object"
    fields: list[tuple[str, Callable[[Any], bool], str]] = [
        ("type", _optional(str), "text"),
        ("value", _optional(str), "text"),
        ("selected_option", _optional(_option), "an option"),
        ("selected_options", _optional(_list_of(_option)), "a list of options"),
        ("selected_user", _optional(str), "text"),
        ("selected_users", _optional(_list_of(_is(str))), "a list of user ids"),
    ]
    for name, ok, expected in fields:
        if not ok(element.get(name)):
            return f"{name} must be {expected}"
    return None


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind)


def _optional(check: type | Callable[[Any], bool]) -> Callable[[Any], bool]:
    test = _is(check) if isinstance(check, type) else check
    return lambda value: value is None or test(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _object_with_id(value: Any) -> bool:
    return isinstance(value, dict) and _text(value.get("id"))


def _option(value: Any) -> bool:
    return isinstance(value, dict) and _optional(str)(value.get("value"))


def _actions(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(a, dict) and _text(a.get("action_id")) for a in value)
    )


def _event(value: Any) -> bool:
    if not isinstance(value, dict) or not _text(value.get("type")):
        return False
    return value["type"] != "app_home_opened" or _text(value.get("user"))
