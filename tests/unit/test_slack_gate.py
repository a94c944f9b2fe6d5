"""The Slack endpoint's gate (``app.slack.payloads.SlackEventsHandler``) as a WSGI app, without a server:
size first, then the signature on the raw bytes, then parsing and the shape check, then Bolt."""

from __future__ import annotations

import io
import json
import time
from typing import Any
from urllib.parse import quote

import pytest
from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult

from app.slack import payloads
from app.slack.payloads import MAX_BODY_BYTES, SlackEventsHandler
from tests.fakes.slack_payloads import parse_body, sign, slash_command, view_submission

SECRET = "gate-signing-secret"


class ExplodingInput:
    """A request stream that fails the test when read: proof that a body was refused before reading."""

    def read(self, *_: Any) -> bytes:
        raise AssertionError("the body was read")


class CountingInput(io.BytesIO):
    """A request stream that remembers how many bytes were taken from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


@pytest.fixture
def gate() -> SlackEventsHandler:
    def authorize(**_: Any) -> AuthorizeResult:  # no auth.test call: this test has no Slack to ask
        return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-gate", bot_user_id="UB", bot_id="B1")

    app = App(signing_secret=SECRET, authorize=authorize)

    @app.command("/posture")
    def posture(ack: Any) -> None:
        ack(text="posture answered")

    @app.view("gate_modal")
    def submitted(ack: Any) -> None:
        ack()

    return SlackEventsHandler(app, signing_secret=SECRET)


def call(
    handler: SlackEventsHandler,
    body: bytes,
    headers: dict[str, str],
    *,
    stream: Any = None,
    length: str | None = None,
    terminated: bool = False,
) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
        "wsgi.input_terminated": terminated,
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"] = int(status.split()[0])

    data = b"".join(handler(environ, start_response))
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"raw": data.decode()}
    return answer["status"], parsed if isinstance(parsed, dict) else {"value": parsed}


def signed(body: bytes, **kw: Any) -> dict[str, str]:
    return sign(SECRET, body, **kw)


def command(text: str = "help") -> bytes:
    return slash_command("/posture", text, "U1", "C1", "https://hooks.invalid/x").encode()


def test_a_signed_command_reaches_bolt(gate: SlackEventsHandler) -> None:
    body = command()
    status, answer = call(gate, body, signed(body))
    assert (status, answer.get("raw")) == (200, "posture answered")


def test_a_large_content_length_is_refused_before_a_byte_is_read(gate: SlackEventsHandler) -> None:
    status, answer = call(gate, b"", {"Content-Type": "application/json"}, stream=ExplodingInput(), length="16777216")
    assert status == 413
    assert f"larger than {MAX_BODY_BYTES} bytes" in answer["message"]


def test_a_body_without_length_is_read_no_further_than_the_cap(gate: SlackEventsHandler) -> None:
    stream = CountingInput(b"x" * (3 * MAX_BODY_BYTES))
    status, _ = call(gate, b"", {"Content-Type": "application/json"}, stream=stream, length="", terminated=True)
    assert status == 413
    assert stream.taken == MAX_BODY_BYTES + 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=\u00e9\u00e9"},
    ],
    ids=["unsigned", "forged", "timestamp-not-a-number", "timestamp-huge", "signature-not-ascii"],
)
def test_unsigned_junk_is_refused_before_it_is_parsed(
    gate: SlackEventsHandler, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parsing(*_: Any, **__: Any) -> None:
        raise AssertionError("an unsigned body was parsed")

    monkeypatch.setattr(payloads, "BoltRequest", no_parsing)
    body = b"payload=" + b"%5B" * 100_000 + b"\xff\xfe"  # would be a RecursionError and bad UTF-8 if parsed
    status, answer = call(gate, body, {"Content-Type": "application/x-www-form-urlencoded", **headers})
    assert status == 401
    assert "signature" in answer["message"]


def test_a_stale_signature_is_refused(gate: SlackEventsHandler) -> None:
    body = command()
    status, _ = call(gate, body, signed(body, timestamp=int(time.time()) - 600))
    assert status == 401


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_signed_json_nested_100k_deep_is_a_400(gate: SlackEventsHandler, content_type: str) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    body = (nested if content_type == "application/json" else "payload=" + quote(nested)).encode()
    status, answer = call(gate, body, signed(body, content_type=content_type))
    assert status == 400
    assert answer["message"] == "the request body is not a Slack payload"


def test_invalid_utf8_cannot_be_verified(gate: SlackEventsHandler) -> None:
    """Slack signs UTF-8 text; bytes that are not UTF-8 are refused as unverifiable, never parsed."""
    body = b"command=%2Fposture&text=\xff\xfe"
    status, _ = call(gate, body, signed(body, content_type="application/x-www-form-urlencoded"))
    assert status == 401


def test_a_signed_view_without_type_is_a_400(gate: SlackEventsHandler) -> None:
    payload = parse_body(view_submission("gate_modal", "U1", {}))
    assert payload["view"].pop("type") == "modal"
    raw = ("payload=" + quote(json.dumps(payload))).encode()
    status, answer = call(gate, raw, signed(raw, content_type="application/x-www-form-urlencoded"))
    assert status == 400
    assert "view.type" in answer["message"]


def test_a_signed_view_with_its_type_reaches_bolt(gate: SlackEventsHandler) -> None:
    raw = view_submission("gate_modal", "U1", {}).encode()
    status, _ = call(gate, raw, signed(raw, content_type="application/x-www-form-urlencoded"))
    assert status == 200
