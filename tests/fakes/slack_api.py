"""A fake Slack Web API on a real local HTTP server, for ``slack_sdk.WebClient(base_url=...)``.

slack_sdk talks urllib (not httpx), so respx cannot intercept it; this server can. It keeps just enough
state to answer like Slack (users, user groups, posted messages, opened views, used trigger ids), checks
the limits that shape the design (Slack's published limits), records every call for assertions, and can be told to fail.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.slack_payloads import API_APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

DEFAULT_TOKEN = "xoxb-test-token"
DEFAULT_SCOPES = (
    "commands",
    "chat:write",
    "users:read",
    "users:read.email",
    "im:write",
    "usergroups:read",
    "channels:read",
    "groups:read",
)
"""The bot scopes manifest.yml asks for: what the fake's token holds unless a test changes ``scopes``."""
RESPONSE_URL_METHOD = "response_url"

# Form fields that Slack accepts as JSON-encoded strings; decoded when recorded.
JSON_FIELDS = frozenset({"blocks", "attachments", "view", "metadata", "unfurls", "options", "option_groups"})

Params = dict[str, Any]
Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Call:
    """One request the fake received: ``params`` are decoded (form or JSON, nested JSON fields too)."""

    seq: int
    method: str
    params: Params
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the fake answered with success."""
        return self.status == 200 and self.response.get("ok", False) is True


@dataclass
class _Failure:
    method: str
    error: str
    status: int
    times: int
    retry_after: int | None


class SlackApiProblem(Exception):
    """A Slack error answer: ``error`` code, optional HTTP status, extra fields for the body."""

    def __init__(self, error: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


# ----------------------------------------------------------------------------------------------------
# limits (Slack's Block Kit reference, docs.slack.dev/reference/block-kit)
# ----------------------------------------------------------------------------------------------------
# Lengths are counted in UTF-16 code units (an astral emoji counts 2): Slack says "characters" without
# saying which, and this reading is the stricter one, so what passes here passes at Slack.

MAX_VIEW_BLOCKS = 100  # Blocks: "100 blocks in modals or Home tabs"; Modal views: "Max of 100 blocks"
MAX_MESSAGE_BLOCKS = 50  # Blocks: "up to 50 blocks in each message"
MAX_TITLE = 24  # Modal views: title, submit and close "max length of 24 characters"
MAX_PRIVATE_METADATA = 3000  # Modal views: private_metadata "max length of 3000 characters"
MAX_TEXT = 3000  # Text object: text "minimum length is 1 and maximum length is 3000 characters"
MAX_SECTION_TEXT = 3000  # Section block: text "maximum length ... is 3000 characters"
MAX_SECTION_FIELDS = 10  # Section block: fields "maximum number of items is 10"
MAX_SECTION_FIELD = 2000  # Section block: fields "maximum length for the text in each item is 2000 characters"
MAX_HEADER_TEXT = 150  # Header block: text "maximum length ... is 150 characters"
MAX_CONTEXT_ELEMENTS = 10  # Context block: elements "maximum number of items is 10"
MAX_ACTIONS_ELEMENTS = 25  # Actions block: "a maximum of 25 elements"
MAX_INPUT_LABEL = 2000  # Input block: label "maximum length ... is 2000 characters"
MAX_INPUT_HINT = 2000  # Input block: hint "maximum length ... is 2000 characters"
MAX_PLACEHOLDER = 150  # Select menus, plain-text input: placeholder "maximum length ... is 150 characters"
MAX_TEXT_INPUT_LENGTH = 3000  # Plain-text input: min_length 0-3000, max_length 1-3000
MAX_BUTTON_TEXT = 75  # Button element: text "maximum length ... is 75 characters"
MAX_BUTTON_VALUE = 2000  # Button element: value "maximum length is 2000 characters"
MAX_URL = 3000  # Button element and option object: url "maximum length is 3000 characters"
MAX_ACCESSIBILITY_LABEL = 75  # Button element: accessibility_label "maximum length is 75 characters"
MAX_OPTIONS = 100  # Select menu element: "maximum number of options is 100"; option group: "maximum of 100"
MAX_OPTION_GROUPS = 100  # Select menu element: "maximum number of option groups is 100"
MAX_OPTION_TEXT = 75  # Option object: text "maximum length ... is 75 characters"
MAX_OPTION_VALUE = 150  # Option object: value "maximum length ... is 150 characters"
MAX_OPTION_DESCRIPTION = 75  # Option object: description "maximum length ... is 75 characters"
MAX_OPTION_GROUP_LABEL = 75  # Option group object: label "maximum length ... is 75 characters"
MAX_CONFIRM_TITLE = 100  # Confirmation dialog object: title "maximum length ... is 100 characters"
MAX_CONFIRM_TEXT = 300  # Confirmation dialog object: text "maximum length ... is 300 characters"
MAX_CONFIRM_BUTTON = 30  # Confirmation dialog object: confirm and deny "maximum length ... is 30 characters"
MAX_ID = 255  # action_id, block_id, callback_id, external_id: "maximum length ... is 255 characters"

STATIC_SELECTS = frozenset({"static_select", "multi_static_select", "radio_buttons", "checkboxes"})
"""Elements whose ``initial_option(s)`` must exactly match options given in the element itself."""


def _length(text: str) -> int:
    """Length in UTF-16 code units, the stricter reading of Slack's "characters"."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _text_of(obj: Any) -> str | None:
    return obj.get("text") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else None


def _too_long(value: Any, limit: int, at: str) -> list[str]:
    if isinstance(value, str) and _length(value) > limit:
        return [f"[ERROR] must be less than {limit + 1} characters [json-pointer:{at}]"]
    return []


def _text_problems(obj: Any, limit: int, at: str, *, plain_only: bool = False) -> list[str]:
    """A required text object of at most ``limit`` (only ``plain_text`` where Slack says so)."""
    text = _text_of(obj)
    if text is None:
        return [f"[ERROR] missing required field: text [json-pointer:{at}]"]
    problems = _too_long(text, limit, f"{at}/text")
    if plain_only and obj.get("type") != "plain_text":
        problems.append(f"[ERROR] must be plain_text [json-pointer:{at}/type]")
    return problems


def _optional_text_problems(obj: Any, limit: int, at: str, *, plain_only: bool = False) -> list[str]:
    return [] if obj is None else _text_problems(obj, limit, at, plain_only=plain_only)


def _one_option_problems(opt: Any, at: str) -> list[str]:
    if not isinstance(opt, dict):
        return [f"[ERROR] must be an object [json-pointer:{at}]"]
    problems = _text_problems(opt.get("text"), MAX_OPTION_TEXT, f"{at}/text")
    if not isinstance(opt.get("value"), str):
        problems.append(f"[ERROR] missing required field: value [json-pointer:{at}/value]")
    problems += _too_long(opt.get("value"), MAX_OPTION_VALUE, f"{at}/value")
    problems += _optional_text_problems(opt.get("description"), MAX_OPTION_DESCRIPTION, f"{at}/description")
    problems += _too_long(opt.get("url"), MAX_URL, f"{at}/url")
    return problems


def _option_problems(options: Any, where: str) -> list[str]:
    if not isinstance(options, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    problems = []
    if len(options) > MAX_OPTIONS:
        problems.append(f"[ERROR] must provide no more than {MAX_OPTIONS} items [json-pointer:{where}]")
    for i, opt in enumerate(options):
        problems += _one_option_problems(opt, f"{where}/{i}")
    return problems


def options_response_problems(answer: dict[str, Any]) -> list[str]:
    """Problems in an app's answer to a ``block_suggestion`` (``options`` or ``option_groups``)."""
    if "options" in answer:
        return _option_problems(answer["options"], "/options")
    if "option_groups" not in answer:
        return ["[ERROR] must provide options or option_groups [json-pointer:/]"]
    return _option_groups_problems(answer["option_groups"], "/option_groups")


def _option_groups_problems(groups: Any, where: str) -> list[str]:
    if not isinstance(groups, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    problems = []
    if len(groups) > MAX_OPTION_GROUPS:
        problems.append(f"[ERROR] must provide no more than {MAX_OPTION_GROUPS} items [json-pointer:{where}]")
    for i, group in enumerate(groups):
        label = _text_of(group.get("label")) if isinstance(group, dict) else None
        if not label or _length(label) > MAX_OPTION_GROUP_LABEL:
            problems.append(
                f"[ERROR] label must be 1-{MAX_OPTION_GROUP_LABEL} characters [json-pointer:{where}/{i}/label]"
            )
        options = group.get("options") if isinstance(group, dict) else None
        problems += _option_problems(options, f"{where}/{i}/options")
    return problems


def _walk(node: Any, where: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every dict inside ``node`` with its JSON pointer."""
    if isinstance(node, dict):
        yield node, where
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}/{i}")


def _initial_problems(element: dict[str, Any], at: str) -> list[str]:
    """A static element's ``initial_option(s)`` must exactly match options of the element (Slack refuses it)."""
    offered: list[Any] = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        if isinstance(group, dict):
            offered += group.get("options") or []
    problems = []
    initial = element.get("initial_option")
    if initial is not None and initial not in offered:
        problems.append(f"[ERROR] initial_option must match one of the options [json-pointer:{at}/initial_option]")
    for i, opt in enumerate(element.get("initial_options") or []):
        if opt not in offered:
            problems.append(f"[ERROR] initial_options must match the options [json-pointer:{at}/initial_options/{i}]")
    return problems


def _element_problems(node: dict[str, Any], at: str) -> list[str]:
    """Limits of one block element (or confirm object), found anywhere in the blocks."""
    problems = _too_long(node.get("action_id"), MAX_ID, f"{at}/action_id")
    kind = node.get("type")
    if "placeholder" in node and kind not in ("plain_text", "mrkdwn"):
        problems += _text_problems(node["placeholder"], MAX_PLACEHOLDER, f"{at}/placeholder", plain_only=True)
    if "options" in node and kind is not None:
        problems += _option_problems(node["options"], f"{at}/options")
    if "option_groups" in node:
        problems += _option_groups_problems(node["option_groups"], f"{at}/option_groups")
    if kind in STATIC_SELECTS:
        problems += _initial_problems(node, at)
    if kind == "button":
        problems += _text_problems(node.get("text"), MAX_BUTTON_TEXT, f"{at}/text", plain_only=True)
        problems += _too_long(node.get("value"), MAX_BUTTON_VALUE, f"{at}/value")
        problems += _too_long(node.get("url"), MAX_URL, f"{at}/url")
        problems += _too_long(node.get("accessibility_label"), MAX_ACCESSIBILITY_LABEL, f"{at}/accessibility_label")
    if kind == "plain_text_input":
        for key, low in (("min_length", 0), ("max_length", 1)):
            value = node.get(key)
            if value is not None and not (isinstance(value, int) and low <= value <= MAX_TEXT_INPUT_LENGTH):
                problems.append(f"[ERROR] must be between {low} and {MAX_TEXT_INPUT_LENGTH} [json-pointer:{at}/{key}]")
    confirm = node.get("confirm")
    if isinstance(confirm, dict) and kind is not None:  # a confirm object's own "confirm" is its button text
        problems += _text_problems(confirm.get("title"), MAX_CONFIRM_TITLE, f"{at}/confirm/title", plain_only=True)
        problems += _text_problems(confirm.get("text"), MAX_CONFIRM_TEXT, f"{at}/confirm/text")
        for key in ("confirm", "deny"):
            problems += _text_problems(confirm.get(key), MAX_CONFIRM_BUTTON, f"{at}/confirm/{key}", plain_only=True)
    return problems


def _block_problems(block: dict[str, Any], at: str) -> list[str]:
    """Limits of one layout block's own fields (its elements are checked by ``_element_problems``)."""
    problems = _too_long(block.get("block_id"), MAX_ID, f"{at}/block_id")
    kind = block["type"]
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"[ERROR] must provide text or fields [json-pointer:{at}]")
        problems += _optional_text_problems(block.get("text"), MAX_SECTION_TEXT, f"{at}/text")
        section_fields = block.get("fields")
        if section_fields is not None:
            if not isinstance(section_fields, list):
                return [*problems, f"[ERROR] must be an array [json-pointer:{at}/fields]"]
            if len(section_fields) > MAX_SECTION_FIELDS:
                problems.append(
                    f"[ERROR] must provide no more than {MAX_SECTION_FIELDS} items [json-pointer:{at}/fields]"
                )
            for i, item in enumerate(section_fields):
                problems += _text_problems(item, MAX_SECTION_FIELD, f"{at}/fields/{i}")
    elif kind == "header":
        problems += _text_problems(block.get("text"), MAX_HEADER_TEXT, f"{at}/text", plain_only=True)
    elif kind in ("context", "actions"):
        limit = MAX_CONTEXT_ELEMENTS if kind == "context" else MAX_ACTIONS_ELEMENTS
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            problems.append(f"[ERROR] must provide at least 1 item [json-pointer:{at}/elements]")
        elif len(elements) > limit:
            problems.append(f"[ERROR] must provide no more than {limit} items [json-pointer:{at}/elements]")
    elif kind == "input":
        problems += _text_problems(block.get("label"), MAX_INPUT_LABEL, f"{at}/label", plain_only=True)
        problems += _optional_text_problems(block.get("hint"), MAX_INPUT_HINT, f"{at}/hint", plain_only=True)
        if not isinstance(block.get("element"), dict):
            problems.append(f"[ERROR] missing required field: element [json-pointer:{at}/element]")
    return problems


def blocks_problems(blocks: Any, limit: int, where: str = "/blocks") -> list[str]:
    """Problems Slack would reject in a blocks array (``limit``: 50 in messages, 100 in views)."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    problems = []
    if len(blocks) > limit:
        problems.append(f"[ERROR] must provide no more than {limit} items [json-pointer:{where}]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or not block.get("type"):
            problems.append(f"[ERROR] missing required field: type [json-pointer:{where}/{i}]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in block_ids:
                problems.append(f"[ERROR] duplicate block_id {block_id!r} [json-pointer:{where}/{i}/block_id]")
            block_ids.add(block_id)
        problems += _block_problems(block, f"{where}/{i}")
    for node, at in _walk(blocks, where):
        if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
            if node.get("text") == "":
                problems.append(f"[ERROR] must be more than 0 characters [json-pointer:{at}/text]")
            problems += _too_long(node.get("text"), MAX_TEXT, f"{at}/text")
        else:
            problems += _element_problems(node, at)
    return list(dict.fromkeys(problems))  # a text checked as a block's field and as a text object: said once


def view_problems(view: Any) -> list[str]:
    """Problems Slack would reject in a view passed to ``views.open/push/update/publish``."""
    if not isinstance(view, dict):
        return ["[ERROR] must be an object [json-pointer:/view]"]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        return ["[ERROR] must be one of modal, home [json-pointer:/view/type]"]
    problems = []
    if kind == "modal":
        title = _text_of(view.get("title"))
        if not title:
            problems.append("[ERROR] missing required field: title [json-pointer:/view/title]")
        for key in ("title", "submit", "close"):
            if view.get(key) is not None:
                problems += _text_problems(view[key], MAX_TITLE, f"/view/{key}", plain_only=True)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and not view.get("submit"):
            problems.append("[ERROR] submit is required when input blocks are present [json-pointer:/view/submit]")
    problems += _too_long(view.get("private_metadata"), MAX_PRIVATE_METADATA, "/view/private_metadata")
    for key in ("callback_id", "external_id"):
        problems += _too_long(view.get(key), MAX_ID, f"/view/{key}")
    problems += blocks_problems(view.get("blocks", []), MAX_VIEW_BLOCKS, "/view/blocks")
    return problems


# ----------------------------------------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------------------------------------

TRIGGER_LIFETIME = 3.0
"""Seconds Slack accepts a ``trigger_id`` for (``expired_trigger_id`` after)."""


def trigger_issued_at(trigger_id: str) -> float | None:
    """When a trigger id from ``tests.fakes.slack_payloads.new_trigger_id`` was issued (epoch seconds).

    ``None`` for ids that carry no time (hand-written ones such as ``"t1"``): those never expire here.
    """
    head = trigger_id.split(".", 1)[0]
    if not (head.isdigit() and len(head) == 13):
        return None
    return int(head) / 1000


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true"))


def _decode_fields(params: Params) -> Params:
    out = dict(params)
    for key in JSON_FIELDS & out.keys():
        value = out[key]
        if isinstance(value, str) and value[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                out[key] = json.loads(value)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _read_params(self) -> Params:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body: Params = {}
        if raw.strip():
            if ctype == "application/json" or (not ctype and raw.lstrip()[:1] == b"{"):
                try:
                    decoded = json.loads(raw)
                except ValueError:
                    raise SlackApiProblem("invalid_json") from None
                if not isinstance(decoded, dict):
                    raise SlackApiProblem("invalid_json")
                body = decoded
            elif ctype in ("application/x-www-form-urlencoded", ""):
                body = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            else:
                raise SlackApiProblem("invalid_form_data")
        return _decode_fields({**query, **body})

    def _handle(self) -> None:
        path = urlsplit(self.path).path
        fake = self.server.fake
        if path.startswith("/api/"):
            method = path[len("/api/") :]
            try:
                params = self._read_params()
            except SlackApiProblem as problem:
                params = {}
                status, answer = problem.status, {"ok": False, "error": problem.error}
                fake._record(method, params, status, answer)
                self._send_json(status, answer)
                return
            status, answer, headers = fake._dispatch(method, params, self.headers.get("Authorization"))
            self._send_json(status, answer, headers)
        elif path.startswith("/response/"):
            name = path[len("/response/") :]
            try:
                params = self._read_params()
            except SlackApiProblem:
                self._send_text(400, "invalid_payload")
                return
            status, text, headers = fake._response_url(name, params)
            self._send_text(status, text, headers)
        else:
            self._send_text(404, "not found")

    def _send_json(self, status: int, answer: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(answer).encode(), "application/json; charset=utf-8", headers)

    def _send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections once a few dozen clients connect at once (seen in
    # bench/load.py at 200 flows); Slack's edge accepts them
    request_queue_size = 512
    fake: FakeSlackAPI


class FakeSlackAPI:
    """A local, stateful fake of the Slack Web API (plus response_url endpoints).

    Use as a context manager or ``start()``/``stop()``; point ``WebClient(base_url=fake.base_url)`` at it.
    Trigger ids are single-use like Slack's (``exchanged_trigger_id`` on reuse) unless
    ``strict_triggers=False``; ``chat.update``/``chat.delete`` need a message the fake has seen
    (post it through the fake or seed it with ``add_message``).
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, strict_triggers: bool = True) -> None:
        self.token = token
        self.app_token: str | None = None
        """The app-level token (``xapp-…``) ``apps.connections.open`` accepts; ``None``: Socket Mode is off."""
        self.socket_url: str | None = None
        """The WebSocket URL ``apps.connections.open`` hands out (a ``FakeSocketMode`` server's)."""
        self.strict_triggers = strict_triggers
        self._lock = threading.Condition(threading.RLock())
        self._calls: list[Call] = []
        self._seq = itertools.count(1)
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._failures: list[_Failure] = []
        self._users: dict[str, dict[str, Any]] = {}
        self._groups: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self.chat_write_public = False
        """Whether the bot holds ``chat:write.public``: it may then post to public channels it is not in."""
        self.scopes: list[str] | None = list(DEFAULT_SCOPES)
        """The token's scopes, sent like Slack in every answer's ``x-oauth-scopes`` header (``None``: no header).
        ``conversations.info`` answers ``missing_scope`` without ``channels:read`` (``groups:read`` for private)."""
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._home_view_ids: dict[str, str] = {}
        self._used_triggers: set[str] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.add_user(BOT_USER_ID, "", "accessbot", "accessbot", is_bot=True)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeSlackAPI:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is None:
            server = _Server(("127.0.0.1", 0), _Handler)
            server.fake = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack-api", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (safe to call twice)."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._server is None:
            raise RuntimeError("FakeSlackAPI is not started")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``WebClient(base_url=...)`` takes: methods are joined onto it (``.../api/chat.postMessage``)."""
        return f"{self.root_url}/api/"

    def response_url_for(self, name: str) -> str:
        """A response_url served here; posts to it are recorded as method ``"response_url"``."""
        return f"{self.root_url}/response/{name}"

    # -- directory ----------------------------------------------------------------------------------

    def add_user(
        self, user_id: str, email: str, name: str, real_name: str | None = None, is_bot: bool = False
    ) -> dict[str, Any]:
        """Add (or replace) a workspace member; returns the ``users.info`` user object."""
        real = real_name or name
        profile: dict[str, Any] = {
            "real_name": real,
            "real_name_normalized": real,
            "display_name": name,
            "display_name_normalized": name,
            "team": TEAM_ID,
        }
        if email:
            profile["email"] = email
        if is_bot:
            profile["bot_id"] = BOT_ID if user_id == BOT_USER_ID else "B" + user_id[1:]
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": "Europe/Berlin",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
        }
        with self._lock:
            self._users[user_id] = user
        return copy.deepcopy(user)

    def add_group(self, group_id: str, handle: str, user_ids: Iterable[str], name: str | None = None) -> None:
        """Add (or replace) a user group ``@handle``."""
        with self._lock:
            self._groups[group_id] = {
                "id": group_id,
                "team_id": TEAM_ID,
                "is_usergroup": True,
                "is_subteam": True,
                "name": name or handle,
                "description": "",
                "handle": handle,
                "is_external": False,
                "date_create": 1_700_000_000,
                "date_update": 1_700_000_000,
                "date_delete": 0,
                "auto_type": None,
                "created_by": "UADMIN",
                "updated_by": "UADMIN",
                "deleted_by": None,
                "prefs": {"channels": [], "groups": []},
                "users": list(user_ids),
            }

    # -- channels -----------------------------------------------------------------------------------------

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        bot_member: bool = True,
        is_private: bool = False,
        archived: bool = False,
    ) -> None:
        """Add (or replace) a channel. ``chat.postMessage`` to a C…/G… channel answers like Slack: an unknown
        channel (or a private one the bot is not in) ``channel_not_found``, a public one the bot is not in
        ``not_in_channel`` (unless ``chat_write_public``), an archived one ``is_archived``. DMs are not
        channels here: user ids and the D… ids of ``conversations.open`` are always allowed."""
        with self._lock:
            self._channels[channel_id] = {
                "id": channel_id,
                "name": name.lstrip("#"),
                "is_private": is_private,
                "is_archived": archived,
                "is_member": bot_member,
            }

    def remove_bot(self, channel_id: str) -> None:
        """The bot leaves (or is removed from) the channel."""
        with self._lock:
            self._channels[channel_id]["is_member"] = False

    def invite_bot(self, channel_id: str) -> None:
        """``/invite @accessbot`` in the channel."""
        with self._lock:
            self._channels[channel_id]["is_member"] = True

    def _postable_channel(self, channel: str) -> str:
        """The id of ``channel`` (an id, or ``#name``) if the bot may post there; else Slack's error."""
        if channel.startswith("#"):
            found = next((c for c in self._channels.values() if c["name"] == channel[1:]), None)
            if found is None:
                raise SlackApiProblem("channel_not_found")
            channel = found["id"]
        if channel[0] not in "CG":
            return channel
        info = self._channels.get(channel)
        if info is None or (info["is_private"] and not info["is_member"]):
            raise SlackApiProblem("channel_not_found")
        if info["is_archived"]:
            raise SlackApiProblem("is_archived")
        if not info["is_member"] and not (self.chat_write_public and not info["is_private"]):
            raise SlackApiProblem("not_in_channel")
        return channel

    def add_message(self, channel: str, ts: str, text: str = "", blocks: list[dict[str, Any]] | None = None) -> None:
        """Seed a message so ``chat.update``/``chat.delete`` can find it."""
        with self._lock:
            self._messages[(channel, ts)] = self._message_obj(ts, {"text": text, "blocks": blocks or []})

    # -- state for assertions ------------------------------------------------------------------------

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """The current state of a posted (and maybe updated) message."""
        with self._lock:
            found = self._messages.get((channel, ts))
            if found is None:
                raise AssertionError(f"no message {ts} in {channel}; have {sorted(self._messages)}")
            return copy.deepcopy(found)

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Current messages (each with its ``channel``), oldest first; deleted ones are gone."""
        with self._lock:
            items = [
                {**copy.deepcopy(m), "channel": ch}
                for (ch, _), m in self._messages.items()
                if channel is None or ch == channel
            ]
        return sorted(items, key=lambda m: m["ts"])

    def view(self, view_id: str) -> dict[str, Any]:
        """The current state of an opened/pushed/updated/published view."""
        with self._lock:
            found = self._views.get(view_id)
            if found is None:
                raise AssertionError(f"no view {view_id}; have {sorted(self._views)}")
            return copy.deepcopy(found)

    def home_view(self, user_id: str) -> dict[str, Any]:
        """The home tab last published for ``user_id``."""
        with self._lock:
            view_id = self._home_view_ids.get(user_id)
        if view_id is None:
            raise AssertionError(f"no home view published for {user_id}")
        return self.view(view_id)

    # -- recorded calls --------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls received so far (all, or of one method), in arrival order."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def last(self, method: str | None = None) -> Call:
        """The latest call (of ``method``); AssertionError when there is none."""
        found = self.calls(method)
        if not found:
            raise AssertionError(f"no call to {method or 'any method'}; calls: {self._summary()}")
        return found[-1]

    def mark(self) -> int:
        """The sequence number of the latest call so far (pass as ``wait_for(..., since=)``)."""
        with self._lock:
            return self._calls[-1].seq if self._calls else 0

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """The first call of ``method`` (after seq ``since``) matching ``predicate``, waiting up to ``timeout``.

        Bolt runs listeners after ``ack()`` in another thread, so the call may arrive after the HTTP
        response; this blocks until it does, or raises AssertionError listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for call in self._calls:
                    if call.seq > since and call.method == method and (predicate is None or predicate(call)):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching {method} call within {timeout}s; calls: {self._summary()}")
                self._lock.wait(remaining)

    def reset(self) -> None:
        """Forget recorded calls and pending failures (users, groups, messages and views stay)."""
        with self._lock:
            self._calls.clear()
            self._failures.clear()

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        status: int = 200,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``error`` (HTTP ``status``).

        A 429 carries ``Retry-After`` (``retry_after``, default 1) as Slack's does. Works for
        ``"response_url"`` too.
        """
        with self._lock:
            self._failures.append(_Failure(method, error, status, times, retry_after))

    # -- internals ---------------------------------------------------------------------------------------

    def _summary(self) -> str:
        return ", ".join(f"#{c.seq} {c.method}{'' if c.ok else ' (failed)'}" for c in self._calls) or "none"

    def _record(self, method: str, params: Params, status: int, response: dict[str, Any]) -> None:
        with self._lock:
            call = Call(next(self._seq), method, params, time.time(), status, response)
            self._calls.append(call)
            self._lock.notify_all()

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    @staticmethod
    def _failure_headers(failure: _Failure) -> dict[str, str]:
        if failure.retry_after is not None:
            return {"Retry-After": str(failure.retry_after)}
        return {"Retry-After": "1"} if failure.status == 429 else {}

    def _dispatch(
        self, method: str, params: Params, authorization: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers: dict[str, str] = {}
        try:
            if not authorization:
                raise SlackApiProblem("not_authed")
            # apps.connections.open takes the app-level token, and only it (as Slack does)
            expected = self.app_token if method == "apps.connections.open" else self.token
            if expected is None or authorization != f"Bearer {expected}":
                raise SlackApiProblem("invalid_auth")
            failure = self._take_failure(method)
            if failure is not None:
                headers = self._failure_headers(failure)
                raise SlackApiProblem(failure.error, status=failure.status)
            handler = self._handlers().get(method)
            if handler is None:
                raise SlackApiProblem("unknown_method")
            with self._lock:
                answer = {"ok": True, **handler(params)}
            status = 200
        except SlackApiProblem as problem:
            status, answer = problem.status, {"ok": False, "error": problem.error, **problem.extra}
        self._record(method, params, status, answer)
        if self.scopes is not None and answer.get("error") not in ("not_authed", "invalid_auth"):
            headers = {**headers, "x-oauth-scopes": ",".join(self._granted())}
        return status, answer, headers

    def _response_url(self, name: str, params: Params) -> tuple[int, str, dict[str, str]]:
        failure = self._take_failure(RESPONSE_URL_METHOD)
        if failure is not None:
            status = failure.status if failure.status != 200 else 400
            self._record(RESPONSE_URL_METHOD, {**params, "name": name}, status, {"ok": False, "error": failure.error})
            return status, failure.error, self._failure_headers(failure)
        self._record(RESPONSE_URL_METHOD, {**params, "name": name}, 200, {"ok": True})
        return 200, "ok", {}

    def _handlers(self) -> dict[str, Callable[[Params], dict[str, Any]]]:
        return {
            "api.test": lambda p: {"args": p} if p else {},
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.list": self._users_list,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
        }

    def _new_ts(self) -> str:
        micros = next(self._ts) * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    @staticmethod
    def _require(params: Params, *names: str) -> None:
        for name in names:
            if params.get(name) in (None, ""):
                raise SlackApiProblem(
                    "invalid_arguments",
                    response_metadata={"messages": [f"[ERROR] missing required field: {name}"]},
                )

    # socket mode

    def _apps_connections_open(self, params: Params) -> dict[str, Any]:
        if self.socket_url is None:
            raise SlackApiProblem("not_allowed_token_type")
        return {"url": self.socket_url}

    # auth / conversations

    def _auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "accessbot test",
            "user": "accessbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _dm_channel(self, user_id: str, error: str) -> str:
        if user_id not in self._users:
            raise SlackApiProblem(error)
        return "D" + user_id

    def _conversations_open(self, params: Params) -> dict[str, Any]:
        if params.get("channel"):
            return {"channel": {"id": params["channel"]}, "no_op": True, "already_open": True}
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackApiProblem("users_list_not_supplied")
        if len(users) == 1:
            return {"channel": {"id": self._dm_channel(users[0], "user_not_found")}}
        for user in users:
            self._dm_channel(user, "user_not_found")
        mpim = "G" + "".join(sorted(u.lstrip("UW") for u in users))
        self._channels.setdefault(
            mpim, {"id": mpim, "name": mpim.lower(), "is_private": True, "is_archived": False, "is_member": True}
        )
        return {"channel": {"id": mpim}}

    def _granted(self) -> list[str]:
        scopes = list(self.scopes or [])
        if self.chat_write_public and "chat:write.public" not in scopes:
            scopes.append("chat:write.public")
        return scopes

    def _conversations_info(self, params: Params) -> dict[str, Any]:
        """Slack's answer for a channel: ``channel_not_found`` for an unknown one or a private one the bot is not
        in; ``missing_scope`` (with ``needed``/``provided``) without ``channels:read`` / ``groups:read``."""
        self._require(params, "channel")
        info = self._channels.get(str(params["channel"]))
        granted = self._granted()
        if "channels:read" not in granted and "groups:read" not in granted:
            raise SlackApiProblem(
                "missing_scope", needed="channels:read,groups:read,mpim:read,im:read", provided=",".join(granted)
            )
        if info is None or (info["is_private"] and not info["is_member"]):
            raise SlackApiProblem("channel_not_found")
        needed = "groups:read" if info["is_private"] else "channels:read"
        if needed not in granted:
            raise SlackApiProblem("missing_scope", needed=needed, provided=",".join(granted))
        return {
            "channel": {
                "id": info["id"],
                "name": info["name"],
                "is_channel": not info["is_private"],
                "is_group": False,
                "is_im": False,
                "is_mpim": False,
                "is_private": info["is_private"],
                "is_archived": info["is_archived"],
                "is_general": False,
                "is_member": info["is_member"],
                "created": 1_700_000_000,
                "creator": "UADMIN",
                "context_team_id": TEAM_ID,
            }
        }

    # chat

    def _resolve_channel(self, channel: Any) -> str:
        if not isinstance(channel, str) or not channel:
            raise SlackApiProblem("channel_not_found")
        if channel[0] in "UW":
            return self._dm_channel(channel, "channel_not_found")
        return channel

    def _check_message(self, params: Params) -> None:
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            raise SlackApiProblem("no_text")
        if "blocks" in params:
            problems = blocks_problems(params["blocks"], MAX_MESSAGE_BLOCKS)
            if problems:
                raise SlackApiProblem("invalid_blocks", response_metadata={"messages": problems})

    def _message_obj(self, ts: str, params: Params) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": API_APP_ID,
            "team": TEAM_ID,
            "text": params.get("text") or "",
            "ts": ts,
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if params.get(key):
                message[key] = copy.deepcopy(params[key])
        return message

    def _chat_post_message(self, params: Params) -> dict[str, Any]:
        channel = self._postable_channel(self._resolve_channel(params.get("channel")))
        self._check_message(params)
        ts = self._new_ts()
        message = self._message_obj(ts, params)
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _stored_message(self, params: Params) -> tuple[str, str]:
        channel = params.get("channel")
        if not isinstance(channel, str) or not channel or channel[0] in "UW":
            raise SlackApiProblem("channel_not_found")
        ts = str(params.get("ts") or "")
        if (channel, ts) not in self._messages:
            raise SlackApiProblem("message_not_found")
        return channel, ts

    def _chat_update(self, params: Params) -> dict[str, Any]:
        channel, ts = self._stored_message(params)
        self._check_message(params)
        old = self._messages[(channel, ts)]
        message = self._message_obj(ts, {**{k: old[k] for k in ("thread_ts",) if k in old}, **params})
        message["edited"] = {"user": BOT_USER_ID, "ts": self._new_ts()}
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "text": message["text"], "message": copy.deepcopy(message)}

    def _chat_post_ephemeral(self, params: Params) -> dict[str, Any]:
        self._resolve_channel(params.get("channel"))
        self._require(params, "user")
        if params["user"] not in self._users:
            raise SlackApiProblem("user_not_found")
        self._check_message(params)
        return {"message_ts": self._new_ts()}

    def _chat_delete(self, params: Params) -> dict[str, Any]:
        channel, ts = self._stored_message(params)
        del self._messages[(channel, ts)]
        return {"channel": channel, "ts": ts}

    # views

    def _new_view(self, view: dict[str, Any], *, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        problems = view_problems(view)
        if problems:
            raise SlackApiProblem("invalid_arguments", response_metadata={"messages": problems})
        view_id = previous["id"] if previous else f"V{next(self._ids):09d}"
        stored = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view["type"],
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "title": None,
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": previous["root_view_id"] if previous else view_id,
            "app_id": API_APP_ID,
            "external_id": "",
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
            **copy.deepcopy(view),
        }
        stored["id"] = view_id
        stored["hash"] = f"{int(time.time())}.{next(self._ids):08d}"
        external_id = stored.get("external_id")
        if external_id and any(v["external_id"] == external_id and v["id"] != view_id for v in self._views.values()):
            raise SlackApiProblem("duplicate_external_id")
        self._views[view_id] = stored
        return copy.deepcopy(stored)

    def _use_trigger(self, params: Params) -> None:
        self._require(params, "trigger_id")
        trigger_id = str(params["trigger_id"])
        if self.strict_triggers and trigger_id in self._used_triggers:
            raise SlackApiProblem("exchanged_trigger_id")
        issued = trigger_issued_at(trigger_id)
        if issued is not None and time.time() - issued > TRIGGER_LIFETIME:
            raise SlackApiProblem("expired_trigger_id")
        self._used_triggers.add(trigger_id)

    def _views_open(self, params: Params) -> dict[str, Any]:
        self._require(params, "view")
        self._use_trigger(params)
        return {"view": self._new_view(params["view"])}

    def _views_update(self, params: Params) -> dict[str, Any]:
        self._require(params, "view")
        current: dict[str, Any] | None
        if params.get("view_id"):
            current = self._views.get(str(params["view_id"]))
        elif params.get("external_id"):
            current = next((v for v in self._views.values() if v["external_id"] == params["external_id"]), None)
        else:
            raise SlackApiProblem("invalid_arguments")
        if current is None:
            raise SlackApiProblem("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackApiProblem("hash_conflict")
        return {"view": self._new_view(params["view"], previous=current)}

    def _views_publish(self, params: Params) -> dict[str, Any]:
        self._require(params, "user_id", "view")
        user_id = str(params["user_id"])
        if user_id not in self._users:
            raise SlackApiProblem("user_not_found")
        view = params["view"]
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackApiProblem(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] must be home [json-pointer:/view/type]"]}
            )
        previous = self._views.get(self._home_view_ids.get(user_id, ""))
        if previous is not None and params.get("hash") and params["hash"] != previous["hash"]:
            raise SlackApiProblem("hash_conflict")
        stored = self._new_view(view, previous=previous)
        self._home_view_ids[user_id] = stored["id"]
        return {"view": stored}

    # users and groups

    def _users_info(self, params: Params) -> dict[str, Any]:
        self._require(params, "user")
        user = self._users.get(str(params["user"]))
        if user is None:
            raise SlackApiProblem("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _users_lookup_by_email(self, params: Params) -> dict[str, Any]:
        self._require(params, "email")
        email = str(params["email"]).strip().lower()
        for user in self._users.values():
            if str(user["profile"].get("email", "")).lower() == email and email:
                return {"user": copy.deepcopy(user)}
        raise SlackApiProblem("users_not_found")

    def _users_list(self, params: Params) -> dict[str, Any]:
        return {
            "members": [copy.deepcopy(u) for u in self._users.values()],
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": ""},
        }

    def _usergroups_list(self, params: Params) -> dict[str, Any]:
        groups = []
        for group in self._groups.values():
            item = copy.deepcopy(group)
            if _truthy(params.get("include_count")):
                item["user_count"] = len(group["users"])
            if not _truthy(params.get("include_users")):
                del item["users"]
            groups.append(item)
        return {"usergroups": groups}

    def _usergroups_users_list(self, params: Params) -> dict[str, Any]:
        self._require(params, "usergroup")
        group = self._groups.get(str(params["usergroup"]))
        if group is None:
            raise SlackApiProblem("no_such_subteam")
        return {"users": list(group["users"])}
