"""A small Slack Web API for ``accessbot demo``: a WSGI app on 127.0.0.1 that the real Bolt app and slack_sdk talk to.

It must be reachable over HTTP because Bolt builds a fresh ``WebClient`` for every request from the app client's
``base_url``, so an in-memory client could not stand in for Slack. It answers the methods the access flow calls
with the response shapes of Slack's method reference (docs.slack.dev/reference/methods) and refuses the way Slack
does (``invalid_auth``, ``channel_not_found``, ``not_in_channel``, ``message_not_found``, ``exchanged_trigger_id``,
``unknown_method``), keeps the messages and views the bot produced so the demo can show them, and records every
call. It is not the test fake (``tests/fakes/slack_api.py``, which app code must not import): no limit checks, no
failure injection, only what the demo's one flow needs.
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from wsgiref.types import StartResponse

TEAM_ID = "T0DEMO"
TEAM_DOMAIN = "accessbot-demo"
APP_ID = "A0DEMO"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"

RESPONSE_PATH = "/response/"
"""Where the demo's ``response_url``s point (on the stand-in, so a reply through one stays on 127.0.0.1)."""
RESPONSE_URL = "response_url"
"""The ``Call.method`` of a post to a ``response_url``."""

Params = dict[str, Any]


class SlackError(Exception):
    """An ``{"ok": false, "error": ...}`` answer."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass(frozen=True)
class Call:
    """One Web API call the stand-in answered (``params`` decoded), in arrival order."""

    method: str
    params: Params
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether Slack's answer was a success."""
        return bool(self.response.get("ok"))


@dataclass
class Workspace:
    """The people, groups and channels of the demo workspace."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)


class SlackStandIn:
    """A WSGI Slack Web API (``<base>/api/<method>``) for one bot token; thread-safe."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.workspace = Workspace()
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, bool] = {}  # issued trigger id -> already exchanged
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)

    # -- the workspace ---------------------------------------------------------------------------------

    def add_user(self, user_id: str, email: str, name: str, real_name: str) -> None:
        """A member of the workspace, as ``users.info`` shows one."""
        profile = {"email": email, "real_name": real_name, "display_name": name, "team": TEAM_ID}
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": int(time.time()),
        }
        with self._lock:
            self.workspace.users[user_id] = user

    def add_group(self, group_id: str, handle: str, members: Iterable[str]) -> None:
        """A user group ``@handle``."""
        with self._lock:
            self.workspace.groups[group_id] = {
                "id": group_id,
                "team_id": TEAM_ID,
                "is_usergroup": True,
                "name": handle,
                "handle": handle,
                "description": "",
                "date_delete": 0,
                "users": list(members),
            }

    def add_channel(self, channel_id: str, name: str, *, bot_member: bool = True) -> None:
        """A public channel; the bot may post only when it is a member (Slack's ``not_in_channel``)."""
        with self._lock:
            self.workspace.channels[channel_id] = {"id": channel_id, "name": name, "is_member": bot_member}

    def name_of(self, user_id: str) -> str:
        """A person's real name (the user id when unknown)."""
        with self._lock:
            user = self.workspace.users.get(user_id)
        return str(user["real_name"]) if user else user_id

    def channel_name(self, channel_id: str) -> str:
        """``#name`` of a channel, ``DM with <name>`` of a direct message."""
        with self._lock:
            channel = self.workspace.channels.get(channel_id)
        if channel is not None:
            return f"#{channel['name']}"
        if channel_id.startswith("D"):
            return f"DM with {self.name_of(channel_id[1:])}"
        return channel_id

    def new_trigger(self) -> str:
        """A trigger id as Slack puts in an interaction payload; ``views.open`` exchanges it once."""
        trigger = f"{int(time.time() * 1000)}.{next(self._ids)}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers[trigger] = False
        return trigger

    # -- what the bot did ------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls so far (all, or of one method), oldest first."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A message as it stands now (after any ``chat.update``)."""
        with self._lock:
            return copy.deepcopy(self._messages[(channel, ts)])

    def view(self, view_id: str) -> dict[str, Any]:
        """A view as it stands now (after any ``views.update``)."""
        with self._lock:
            return copy.deepcopy(self._views[view_id])

    # -- WSGI ------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        params = _decode(raw, str(environ.get("CONTENT_TYPE") or ""))
        if path.startswith(RESPONSE_PATH):  # a response_url: Slack answers a plain "ok"
            with self._lock:
                self._calls.append(Call(RESPONSE_URL, params, {"ok": True}))
            body, content_type = b"ok", "text/plain"
        else:
            answer = self.answer(path.rsplit("/", 1)[-1], params, environ.get("HTTP_AUTHORIZATION"))
            body, content_type = json.dumps(answer).encode(), "application/json; charset=utf-8"
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def answer(self, method: str, params: Params, authorization: str | None) -> dict[str, Any]:
        """Slack's answer to one call (recorded)."""
        try:
            if not authorization and not params.get("token"):
                raise SlackError("not_authed")
            if authorization != f"Bearer {self.token}" and params.get("token") != self.token:
                raise SlackError("invalid_auth")
            handler = self._handlers().get(method)
            if handler is None:
                raise SlackError("unknown_method")
            with self._lock:
                answer = {"ok": True, **handler(params)}
        except SlackError as problem:
            answer = {"ok": False, "error": problem.error, **problem.extra}
        with self._lock:
            self._calls.append(Call(method, params, copy.deepcopy(answer)))
        return answer

    def _handlers(self) -> dict[str, Callable[[Params], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "conversations.open": self._conversations_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.list": self._users_list,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
        }

    # -- methods ---------------------------------------------------------------------------------------

    def _auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "accessbot demo",
            "user": "accessbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _user(self, user_id: Any, error: str = "user_not_found") -> dict[str, Any]:
        user = self.workspace.users.get(str(user_id or ""))
        if user is None:
            raise SlackError(error)
        return user

    def _conversations_open(self, params: Params) -> dict[str, Any]:
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_supported")  # group DMs: the flow never opens one
        return {"channel": {"id": "D" + self._user(users[0])["id"]}}

    def _postable(self, channel: Any) -> str:
        """The channel a message goes to: a user id posts in the DM with the bot, as Slack does."""
        name = str(channel or "")
        if name[:1] in ("U", "W"):
            return "D" + self._user(name, "channel_not_found")["id"]
        if name[:1] == "D":
            self._user(name[1:], "channel_not_found")
            return name
        info = self.workspace.channels.get(name)
        if info is None:
            raise SlackError("channel_not_found")
        if not info["is_member"]:
            raise SlackError("not_in_channel")
        return name

    @staticmethod
    def _check_text(params: Params) -> None:
        if not params.get("text") and not params.get("blocks"):
            raise SlackError("no_text")

    def _message_obj(self, ts: str, params: Params) -> dict[str, Any]:
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "ts": ts}
        message["text"] = str(params.get("text") or "")
        message["blocks"] = _json_field(params.get("blocks")) or []
        return message

    def _new_ts(self) -> str:
        return f"{time.time():.0f}.{next(self._ts):06d}"

    def _chat_post_message(self, params: Params) -> dict[str, Any]:
        channel = self._postable(params.get("channel"))
        self._check_text(params)
        ts = self._new_ts()
        message = self._message_obj(ts, params)
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_update(self, params: Params) -> dict[str, Any]:
        key = (str(params.get("channel") or ""), str(params.get("ts") or ""))
        if key not in self._messages:
            raise SlackError("message_not_found" if key[0][:1] in ("C", "D") else "channel_not_found")
        self._check_text(params)
        message = self._message_obj(key[1], params)
        message["edited"] = {"user": BOT_USER_ID, "ts": self._new_ts()}
        self._messages[key] = message
        return {"channel": key[0], "ts": key[1], "text": message["text"], "message": copy.deepcopy(message)}

    def _chat_post_ephemeral(self, params: Params) -> dict[str, Any]:
        self._postable(params.get("channel"))
        self._user(params.get("user"))
        self._check_text(params)
        return {"message_ts": self._new_ts()}

    def _store_view(self, view: Any, view_id: str | None = None) -> dict[str, Any]:
        spec = _json_field(view)
        if not isinstance(spec, dict) or spec.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] invalid view"]})
        view_id = view_id or f"V0DEMO{next(self._ids):05d}"
        stored = {
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "previous_view_id": None,
            "root_view_id": view_id,
            **copy.deepcopy(spec),
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        }
        self._views[view_id] = stored
        return copy.deepcopy(stored)

    def _views_open(self, params: Params) -> dict[str, Any]:
        trigger = str(params.get("trigger_id") or "")
        if not trigger:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] missing trigger_id"]})
        if trigger not in self._triggers:
            raise SlackError("expired_trigger_id")  # not one of ours: as good as one Slack no longer knows
        if self._triggers[trigger]:
            raise SlackError("exchanged_trigger_id")
        self._triggers[trigger] = True
        return {"view": self._store_view(params.get("view"))}

    def _views_update(self, params: Params) -> dict[str, Any]:
        view_id = str(params.get("view_id") or "")
        current = self._views.get(view_id)
        if current is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._store_view(params.get("view"), view_id)}

    def _views_publish(self, params: Params) -> dict[str, Any]:
        user_id = self._user(params.get("user_id"))["id"]
        return {"view": self._store_view(params.get("view"), f"VHOME{user_id}")}

    def _users_info(self, params: Params) -> dict[str, Any]:
        return {"user": copy.deepcopy(self._user(params.get("user")))}

    def _users_lookup_by_email(self, params: Params) -> dict[str, Any]:
        email = str(params.get("email") or "").strip().lower()
        for user in self.workspace.users.values():
            if email and user["profile"]["email"].lower() == email:
                return {"user": copy.deepcopy(user)}
        raise SlackError("users_not_found")

    def _users_list(self, params: Params) -> dict[str, Any]:
        members = [copy.deepcopy(u) for u in self.workspace.users.values()]
        return {"members": members, "cache_ts": int(time.time()), "response_metadata": {"next_cursor": ""}}

    def _usergroups_list(self, params: Params) -> dict[str, Any]:
        include_users = str(params.get("include_users", "")).lower() in ("1", "true")
        groups = []
        for group in self.workspace.groups.values():
            item = copy.deepcopy(group)
            if not include_users:
                del item["users"]
            groups.append(item)
        return {"usergroups": groups}

    def _usergroups_users_list(self, params: Params) -> dict[str, Any]:
        group = self.workspace.groups.get(str(params.get("usergroup") or ""))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}


def _decode(raw: bytes, content_type: str) -> Params:
    """A Web API call's arguments: a JSON body, or a form (slack_sdk sends both)."""
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            decoded = json.loads(text or "{}")
        except ValueError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return dict(parse_qsl(text, keep_blank_values=True))


def _json_field(value: Any) -> Any:
    """Slack takes ``blocks`` and ``view`` as JSON objects in a JSON body or as JSON strings in a form."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return copy.deepcopy(value)
