"""``accessbot demo``: one request -> approve -> grant -> expiry, offline, through the real app.

The real services (``app.bootstrap.build``) on a temporary SQLite database and the built-in tailnet; the real
Bolt app behind the real Slack HTTP app (``Services.slack_wsgi``, ``process_before_response=False`` as in
production) on 127.0.0.1; the Slack Web API played by ``SlackStandIn`` on 127.0.0.1. The demo sends the signed
payloads Slack would send for each click, waits for the app's work after each acknowledgement, and prints what
each person and the notify channel would see. Time is a ``FrozenClock``: after the grant it moves past the
expiry and the scheduler's own jobs run once (the expiry sweep, then the access cycle). Every step checks that
what should have happened did (``DemoFailed`` with one line otherwise). Nothing outlives the run: the temporary
directory is removed, no environment variable is read for the app's settings or changed, the key and database
files live in the temporary directory.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from app.bootstrap.demo import payloads
from app.bootstrap.demo.blocks_text import block_lines
from app.bootstrap.demo.slack_standin import RESPONSE_PATH, RESPONSE_URL, Call, SlackStandIn
from app.bootstrap.services import Services, build
from app.config.settings import Settings
from app.config.source import ConfigSource
from app.core.clock import FrozenClock
from app.core.metrics import Metrics
from app.core.timefmt import format_rfc3339
from app.scheduler import run_access_cycle, sweep_expired
from app.slack.ids import ActionId, BlockId, CallbackId
from app.tailnet.models import Actor, Device
from app.web.server import HttpServer, make_server

Emit = Callable[[str], None]

REQUESTER, APPROVER = "U0RITA", "U0BOB"
CHANNEL, CHANNEL_NAME = "C0ACCESS", "access-requests"
ATTRIBUTE = "custom:prodAccess"
REASON = "deploy hotfix 42"
SETTLE_SECONDS = 15.0
"""How long the app may take over its work after one acknowledgement (it takes milliseconds)."""

CONFIG_YAML = f"""\
request_timeout: 1h
profiles:
  - id: prod
    description: Production database
    attribute: {ATTRIBUTE}
    value: true
    max_duration: 1h
    durations: [30m, 1h]
    approvers: [bob@example.com]
    notify_channel: {CHANNEL}
    devices: {{own_or_tagged: [tag:prod]}}
"""


class DemoFailed(Exception):
    """A step of the demo did not happen; the message says which and what was seen instead."""


class _DemoSettings(Settings):
    """Settings from the demo's own values only: an operator's DATABASE_URL, TAILSCALE_* or SLACK_* must never
    point the demo at a real database, tailnet or workspace."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
"""What slack_sdk reads for a proxy; it then sends every call through it, calls to 127.0.0.1 too."""


def run_demo(emit: Emit) -> None:
    """Play the flow, emitting what people see line by line; ``DemoFailed`` when a step does not happen."""
    proxies = [name for name in PROXY_VARIABLES if os.environ.get(name, "").strip()]
    if proxies:
        unset = " ".join(f"-u {name}" for name in PROXY_VARIABLES)
        raise DemoFailed(
            f"{proxies[0]} is set and slack_sdk would send the demo's Slack calls to 127.0.0.1 through that proxy: "
            f"run `env {unset} accessbot demo`"
        )
    with tempfile.TemporaryDirectory(prefix="accessbot-demo-") as tmp, _Demo(Path(tmp), emit) as demo:
        demo.play()


def _serve(app: Any, stack: ExitStack, name: str) -> HttpServer:
    """Serve ``app`` on a free port of 127.0.0.1 until ``stack`` closes."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stack.callback(stop)
    return server


class _Demo:
    """The app, Slack's stand-in and the driver of one flow."""

    def __init__(self, workdir: Path, emit: Emit) -> None:
        self.workdir = workdir
        self.emit = emit
        self.clock = FrozenClock()
        self.token = "xoxb-demo-" + secrets.token_hex(12)
        self.signing_secret = secrets.token_hex(16)
        self.slack = SlackStandIn(self.token)
        self._stack = ExitStack()
        self._seen = 0
        self._shown: dict[tuple[str, str], list[str]] = {}  # what each message showed when last printed

    # -- set-up and tear-down ----------------------------------------------------------------------------

    def __enter__(self) -> _Demo:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        slack = self.slack
        slack.add_user(REQUESTER, "rita@example.com", "rita", "Rita Requester")
        slack.add_user(APPROVER, "bob@example.com", "bob", "Bob Approver")
        slack.add_channel(CHANNEL, CHANNEL_NAME)
        slack_url = f"http://127.0.0.1:{_serve(slack, self._stack, 'demo-slack').server_port}"
        self.response_url = f"{slack_url}{RESPONSE_PATH}demo"
        config_path = self.workdir / "accessbot.yml"
        config_path.write_text(CONFIG_YAML)
        settings = _DemoSettings(  # type: ignore[call-arg]
            DATABASE_URL=f"sqlite:///{self.workdir / 'accessbot.db'}",
            ACCESSBOT_CONFIG=config_path,
            ACCESSBOT_SECRET_KEY=secrets.token_urlsafe(32),
            SLACK_BOT_TOKEN=self.token,
            SLACK_SIGNING_SECRET=self.signing_secret,
            SLACK_API_URL=f"{slack_url}/api/",
        )
        config = ConfigSource(config_path, min_interval=0)
        services = build(settings, clock=self.clock, config=config, metrics=Metrics())  # counts of its own
        self._stack.callback(services.close)
        self.services = services
        self.laptop, self.db_server = self._devices(services)
        bolt_app = services.bolt_app()  # the token is checked with auth.test, as at start in production
        ctx = services.slack
        self._stack.callback(ctx.pools.shutdown)
        ctx.devices.refresh()
        app_url = f"http://127.0.0.1:{_serve(services.slack_wsgi(bolt_app), self._stack, 'demo-app').server_port}"
        self.events_url = f"{app_url}/slack/events"
        self.http = httpx.Client(timeout=10.0, trust_env=False)
        self._stack.callback(self.http.close)
        self._stack.callback(self._settle_quietly)

    def _devices(self, services: Services) -> tuple[Device, Device]:
        add = getattr(services.tailnet, "add_device", None)
        if add is None:
            raise DemoFailed("the demo needs the built-in tailnet, but the app was built with another adapter")
        setup = Actor("cli:demo")
        laptop = add(name="rita-laptop", user="rita@example.com", os="macOS", addresses=["100.64.0.10"], actor=setup)
        server = add(
            name="db-prod-1",
            user="ops@example.com",
            os="linux",
            tags=["tag:prod"],
            addresses=["100.64.0.20"],
            actor=setup,
        )
        return laptop, server

    def _settle(self, step: str) -> None:
        if not self.services.slack.pools.settle(SETTLE_SECONDS):
            raise DemoFailed(
                f"{step}: the app's work after the acknowledgement did not finish in {SETTLE_SECONDS:.0f} s"
            )

    def _settle_quietly(self) -> None:
        self.services.slack.pools.settle(SETTLE_SECONDS)

    # -- talking to the app as Slack does -------------------------------------------------------------

    def _post(self, step: str, body: bytes) -> httpx.Response:
        """POST a signed payload to ``/slack/events``; the app must acknowledge it with a 200."""
        headers = payloads.signed_headers(self.signing_secret, body)
        try:
            response = self.http.post(self.events_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DemoFailed(f"{step}: the app did not answer ({exc})") from None
        if response.status_code != 200:
            raise DemoFailed(f"{step}: the app answered {response.status_code}: {response.text[:200]}")
        self._settle(step)
        return response

    def _new_calls(self, step: str) -> list[Call]:
        """Slack calls since the last step; a call Slack refused fails the step (the flow needs none)."""
        calls = self.slack.calls()
        new, self._seen = calls[self._seen :], len(calls)
        for call in new:
            if not call.ok:
                raise DemoFailed(f"{step}: Slack refused {call.method} ({call.response.get('error')})")
        return new

    # -- output ---------------------------------------------------------------------------------------

    def _step(self, title: str) -> None:
        self.emit("")
        self.emit(f"==> {title}")

    def _show(
        self, who: str, blocks: list[dict[str, Any]], text: str = "", *, key: tuple[str, str] | None = None
    ) -> None:
        """Print a surface; a message printed before (``key``) shows only its lines that changed."""
        lines = list(block_lines(blocks, user_name=self.slack.name_of, channel_name=self.slack.channel_name))
        lines = lines or [text]
        before = self._shown.get(key) if key is not None else None
        if key is not None:
            self._shown[key] = lines
        if before is not None:
            lines = [line for line in lines if line not in before] or ["(no visible change)"]
            who += " (what changed)"
        self.emit(f"  {who}:")
        for line in lines:
            self.emit(f"    {line}")

    def _show_messages(self, calls: list[Call]) -> list[Call]:
        """Print every message the bot posted or updated in ``calls``; return those calls."""
        shown = [c for c in calls if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral")]
        for call in shown:
            channel = str(call.response.get("channel") or call.params.get("channel") or "")
            where = self.slack.channel_name(channel)
            verb = {"chat.update": "updated in", "chat.postEphemeral": "only visible to the clicker, in"}.get(
                call.method, "new message in"
            )
            message = call.response.get("message") or call.params
            key = (channel, str(call.response.get("ts"))) if call.method != "chat.postEphemeral" else None
            self._show(f"{verb} {where}", _blocks(message), str(message.get("text") or ""), key=key)
        for call in calls:
            if call.method == RESPONSE_URL:
                self._show("reply to the click", _blocks(call.params), str(call.params.get("text") or ""))
        return shown

    def _show_attributes(self, device: Device) -> dict[str, Any]:
        """Print the device's ``custom:`` attributes with their expiries; return them."""
        found = self.services.tailnet.get_attributes(device.id)
        custom = {k: v for k, v in found.attributes.items() if k.startswith("custom:")}
        self.emit(f"  device {device.name} attributes (custom:):")
        if not custom:
            self.emit("    (none)")
        for key, value in sorted(custom.items()):
            expiry = found.expiries.get(key)
            until = f", expires {format_rfc3339(expiry)}" if expiry is not None else ""
            shown = str(value).lower() if isinstance(value, bool) else value
            self.emit(f"    {key}: {shown}{until}")
        return custom

    # -- the flow -------------------------------------------------------------------------------------

    def play(self) -> None:
        """Request -> options -> submit -> approve -> grant -> expiry, checking each step."""
        self.emit("accessbot demo: the real Slack app against a stand-in for Slack on 127.0.0.1 and the built-in")
        self.emit("tailnet, in a temporary directory. Rita asks for production access, Bob approves.")
        self._new_calls("start")  # auth.test of the app's start
        view = self._open_form()
        device_option = self._pick_device(view)
        self._submit(view, device_option)
        self._approve()
        self._expire()
        self.emit("")
        self.emit("demo complete: requested, approved, granted, expired.")

    def _open_form(self) -> dict[str, Any]:
        step = "1. the shortcut"
        self._step("1. Rita runs the global shortcut 'Request Tailscale Access'")
        self._post(step, payloads.global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER, self.slack.new_trigger()))
        calls = self._new_calls(step)
        opened = [c for c in calls if c.method == "views.open"]
        if not opened:
            raise DemoFailed(f"{step}: the app never opened the request form (views.open)")
        view = self.slack.view(str(opened[0].response["view"]["id"]))
        blocks = [b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"]
        if BlockId.DEVICE not in blocks:
            raise DemoFailed(f"{step}: the request form has no device picker (inputs: {blocks})")
        self._show("Rita sees the form", view.get("blocks", []))
        return view

    def _pick_device(self, view: dict[str, Any]) -> dict[str, Any]:
        step = "2. the device picker"
        self._step("2. Rita opens the device picker (an options load)")
        body = payloads.block_suggestion(view, BlockId.DEVICE, ActionId.DEVICE_SELECT, "", REQUESTER)
        answer = self._post(step, body)
        self._new_calls(step)
        try:
            groups = answer.json().get("option_groups") or [
                {"label": {"text": ""}, "options": answer.json()["options"]}
            ]
        except (ValueError, KeyError, AttributeError):
            raise DemoFailed(f"{step}: the app's options answer is not Slack's shape: {answer.text[:200]}") from None
        for group in groups:
            self.emit(f"  {group['label']['text'] or 'options'}:")
            for opt in group["options"]:
                self.emit(f"    • {opt['text']['text']}")
        mine = next((o for g in groups for o in g["options"] if o["value"] == self.laptop.id), None)
        if mine is None:
            raise DemoFailed(f"{step}: Rita's laptop ({self.laptop.id}) is not among the options offered")
        self.emit(f"  Rita picks '{mine['text']['text']}'.")
        return mine

    def _submit(self, view: dict[str, Any], device_option: dict[str, Any]) -> None:
        step = "3. the submission"
        self._step(f"3. Rita chooses 30 minutes, approver Bob, reason '{REASON}', and submits")
        state = _form_state(view, device_option)
        answer = self._post(step, payloads.view_submission(view, state, REQUESTER, self.slack.new_trigger()))
        if answer.content and answer.json().get("response_action") == "errors":
            raise DemoFailed(f"{step}: the form was refused: {answer.json().get('errors')}")
        calls = self._new_calls(step)
        shown = self._show_messages(calls)
        if not any(c.response.get("channel") == f"D{APPROVER}" for c in shown if c.method == "chat.postMessage"):
            raise DemoFailed(f"{step}: Bob (the approver) was never sent the request")

    def _approve(self) -> None:
        step = "4. the approval"
        channel = f"D{APPROVER}"
        posted = [
            c
            for c in self.slack.calls("chat.postMessage")
            if c.response.get("channel") == channel and c.response.get("ok")
        ]
        message = self.slack.message(channel, str(posted[0].response["ts"]))
        found = _button(message.get("blocks", []), ActionId.APPROVE)
        if found is None:
            raise DemoFailed(f"{step}: Bob's message has no Approve button")
        block_id, button = found
        self._step("4. Bob clicks Approve")
        body = payloads.button_in_message(
            message,
            channel,
            block_id,
            button,
            APPROVER,
            trigger_id=self.slack.new_trigger(),
            response_url=self.response_url,
        )
        self._post(step, body)
        calls = self._new_calls(step)
        self._show_messages(calls)
        granted = self._show_attributes(self.laptop)
        if granted.get(ATTRIBUTE) is not True:
            raise DemoFailed(f"{step}: the grant never landed: {self.laptop.name} has no {ATTRIBUTE} = true")
        if not any(c.params.get("channel") == CHANNEL for c in calls if c.method == "chat.postMessage"):
            raise DemoFailed(f"{step}: the grant was not announced in #{CHANNEL_NAME}")

    def _expire(self) -> None:
        step = "5. the expiry"
        expiry = self.services.tailnet.get_attributes(self.laptop.id).expiries.get(ATTRIBUTE)
        if expiry is None:
            raise DemoFailed(f"{step}: the grant was written without an expiry")
        self.clock.now = expiry + timedelta(seconds=1)
        self._step(f"5. The clock moves past the expiry ({format_rfc3339(expiry)}); the scheduler's jobs run once")
        purged = sweep_expired(self.services.tailnet)
        run_access_cycle(self.services.lifecycle, self.services.notifier.deliver)
        self._settle(step)
        self.emit(f"  expiry sweep: {purged} expired attribute(s) removed")
        calls = self._new_calls(step)
        shown = self._show_messages(calls)
        remaining = self._show_attributes(self.laptop)
        if ATTRIBUTE in remaining:
            raise DemoFailed(f"{step}: {ATTRIBUTE} is still on {self.laptop.name} after its expiry")
        if not any(c.response.get("channel") == f"D{REQUESTER}" for c in shown):
            raise DemoFailed(f"{step}: Rita was never told that her access ended")


def _blocks(message: Any) -> list[dict[str, Any]]:
    blocks = message.get("blocks") if isinstance(message, dict) else None
    return [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []


def _elements(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for block in blocks:
        candidates = [*(block.get("elements") or []), block.get("accessory"), block.get("element")]
        for element in candidates:
            if isinstance(element, dict):
                yield str(block.get("block_id", "")), element


def _button(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]] | None:
    return next(((b, e) for b, e in _elements(blocks) if e.get("action_id") == action_id), None)


def _option(element: dict[str, Any], choose: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    options = list(element.get("options") or [])
    options += [o for g in element.get("option_groups") or [] for o in g.get("options") or []]
    return next((o for o in options if choose(o)), None)


def _empty_state(kind: str) -> dict[str, Any]:
    """The state Slack sends for an optional input left empty (a start time, the break-glass checkbox)."""
    if kind == "datetimepicker":
        return {"type": kind, "selected_date_time": None}
    if kind in ("checkboxes",) or kind.startswith("multi_"):
        return {"type": kind, "selected_options": []}
    return {"type": kind, "selected_option": None}


def _form_state(view: dict[str, Any], device_option: dict[str, Any]) -> dict[str, Any]:
    """``view.state.values`` as Slack sends them when Rita has filled in the form: the profile already selected,
    her laptop, the shortest duration, Bob, the reason."""
    values: dict[str, Any] = {}
    for block in view.get("blocks", []):
        element = block.get("element")
        if block.get("type") != "input" or not isinstance(element, dict):
            continue
        block_id, kind = str(block.get("block_id")), str(element.get("type"))
        chosen: dict[str, Any] | None
        if block_id == BlockId.DEVICE:
            chosen = device_option
        elif block_id == BlockId.APPROVER:
            chosen = _option(element, lambda o: o.get("value") == APPROVER)
        elif block_id == BlockId.DURATION:
            chosen = _option(element, lambda o: o.get("value") == str(30 * 60))
        elif block_id == BlockId.REASON:
            values[block_id] = {str(element["action_id"]): {"type": kind, "value": REASON}}
            continue
        elif block.get("optional") and "initial_option" not in element:  # left empty, as Slack sends it
            values[block_id] = {str(element["action_id"]): _empty_state(kind)}
            continue
        else:
            chosen = element.get("initial_option") or _option(element, lambda o: True)
        if chosen is None:
            raise DemoFailed(f"3. the submission: the form's '{block_id}' field offers nothing to choose")
        entry = {"type": kind}
        entry.update({"selected_options": [chosen]} if kind.startswith("multi_") else {"selected_option": chosen})
        values[block_id] = {str(element["action_id"]): entry}
    return values
