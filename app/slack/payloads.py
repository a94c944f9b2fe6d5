"""The Slack endpoint's gate: junk is refused before it costs anything, malformed payloads before Bolt sees them.

In order, for each ``POST /slack/events``: a body over ``MAX_BODY_BYTES`` is a 413, refused from its
``Content-Length`` before a byte is read (and a body without one is read no further than the cap); the
signature and timestamp are verified on the raw bytes (401 when wrong or stale) before anything is parsed;
only then is the body parsed (400 when it does not parse, e.g. invalid UTF-8 or JSON nested 100,000 deep)
and its shape checked (Slack's interaction payload reference): a payload whose fields have the wrong JSON types
where Bolt's middleware and accessbot's listeners rely on them (``user``, ``actions``, ``view.type``,
``view.state.values``, ...) is a 400 ``{"message": ...}`` with a WARNING naming what is wrong — never the values,
which may hold credentials (the connect form). Bolt verifies the signature once more; it only ever sees signed,
well-formed payloads. A ``block_suggestion`` whose ``action_id`` has an inline answer (the device picker) is
answered here, after all of the above, without Bolt's acknowledgement poll (~10 ms a keystroke).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from wsgiref.types import WSGIEnvironment

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
"""Slack's payloads are a few kilobytes; a megabyte is generous."""
INTERACTIVE = frozenset({"block_actions", "block_suggestion", "view_submission", "view_closed", "shortcut"})
"""Payload types that always carry ``user`` as an object."""
WITH_TRIGGER = frozenset({"block_actions", "shortcut", "message_action"})
InlineAnswer = Callable[[dict[str, Any]], dict[str, Any]]
"""A signed, shape-checked payload -> the JSON answer (e.g. Slack's options response)."""
PARSE_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError)
"""What parsing a body can raise: bad UTF-8 or JSON (ValueError), JSON nested too deep (RecursionError), ..."""


def json_error(status: int, message: str) -> BoltResponse:
    """A JSON ``{"message": ...}`` answer."""
    return BoltResponse(
        status=status, body=json.dumps({"message": message}), headers={"content-type": "application/json"}
    )


def bad_request(message: str) -> BoltResponse:
    """A 400 with a JSON ``{"message": ...}`` body."""
    return json_error(400, message)


class BodyTooLarge(Exception):
    """The request body is larger than the endpoint takes."""


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """The request body, never reading more than ``limit`` bytes (+1 to tell that there is more).

    A ``Content-Length`` over the limit is refused before reading; a body without one is read only when the
    server says the stream ends (``wsgi.input_terminated``), as PEP 3333 allows.
    """
    text = str(environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if text:
        if not text.isdigit():
            raise ValueError("Content-Length is not a number")
        length = int(text)
        if length > limit:
            raise BodyTooLarge
        return bytes(stream.read(length))
    if not environ.get("wsgi.input_terminated"):
        return b""
    data = bytes(stream.read(limit + 1))
    if len(data) > limit:
        raise BodyTooLarge
    return data


class SlackEventsHandler(SlackRequestHandler):
    """Bolt's WSGI handler behind the gate described above."""

    def __init__(
        self,
        app: App,
        *,
        signing_secret: str,
        path: str = "/slack/events",
        max_body: int = MAX_BODY_BYTES,
        inline: Mapping[str, InlineAnswer] | None = None,
    ) -> None:
        super().__init__(app, path=path)
        self.verifier = SignatureVerifier(signing_secret)
        self.max_body = max_body
        self.inline = dict(inline or {})
        """``block_suggestion`` answers given here, by ``action_id``; every other payload goes to Bolt."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        """Cap, verify, parse, check; Bolt's answer only for a signed, well-formed payload."""
        try:
            raw = read_body(request.environ, self.max_body)
        except BodyTooLarge:
            log.warning("refused a Slack request larger than %d bytes", self.max_body)
            return json_error(413, f"the request body is larger than {self.max_body} bytes")
        except (ValueError, OSError) as exc:
            log.warning("refused a Slack request whose body could not be read (%s)", type(exc).__name__)
            return bad_request("the request body could not be read")
        headers = request.get_headers()
        if not self._signed(raw, headers):
            log.warning("refused a Slack request with an invalid or stale signature")
            return json_error(401, "invalid request: the Slack signature is missing, wrong or stale")
        try:
            bolt_request = BoltRequest(body=raw.decode("utf-8"), query=request.query_string, headers=headers)
        except PARSE_ERRORS as exc:
            log.warning("refused a Slack request whose body does not parse (%s)", type(exc).__name__)
            return bad_request("the request body is not a Slack payload")
        problem = payload_problem(bolt_request.body)
        if problem is not None:
            kind = bolt_request.body.get("type") if isinstance(bolt_request.body, dict) else None
            log.warning("refused a malformed Slack payload (type %s): %s", str(kind)[:40], problem)
            return bad_request(f"malformed Slack payload: {problem}")
        answer = self._inline_answer(bolt_request.body)
        return answer if answer is not None else self.app.dispatch(bolt_request)

    def _inline_answer(self, body: dict[str, Any]) -> BoltResponse | None:
        """The inline answer to a ``block_suggestion`` that has one; ``None``: Bolt answers."""
        action_id = body.get("action_id")
        if body.get("type") != "block_suggestion" or not isinstance(action_id, str):
            return None
        answer = self.inline.get(action_id)
        if answer is None:
            return None
        try:
            return BoltResponse(status=200, body=answer(body))  # a dict body: JSON, as Bolt's ack(options=...)
        except Exception:
            log.exception("the inline answer to a block_suggestion (%s) failed", action_id[:40])
            return BoltResponse(status=500, body="")  # as Bolt answers a listener that raised

    def _signed(self, raw: bytes, headers: dict[str, Any]) -> bool:
        timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        if not isinstance(timestamp, str) or not isinstance(signature, str):
            return False
        try:
            return self.verifier.is_valid(raw, timestamp.strip(), signature.strip())
        except (ValueError, TypeError, OverflowError):  # a timestamp that is no number, non-ASCII signature
            return False


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
    if not _text(view.get("type")):
        return "view.type must be text"
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
    """Slack's view state values (``view.state.values``): each field, when present, of the type Slack sends."""
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
