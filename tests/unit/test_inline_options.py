"""Inline ``block_suggestion`` answers of the Slack endpoint's gate: given after the signature and shape checks,
from the signed payload, never reaching Bolt; other payloads still go to Bolt."""

from __future__ import annotations

from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult

from app.slack.payloads import SlackEventsHandler
from tests.fakes.slack_payloads import block_suggestion, form_payload, parse_body
from tests.unit.test_slack_gate import SECRET, call, signed


class Recorder:
    """An inline answer that records the payloads it was given."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return {"options": [{"text": {"type": "plain_text", "text": body["user"]["id"]}, "value": "d1"}]}


@pytest.fixture
def bolt_calls() -> list[str]:
    return []


@pytest.fixture
def app(bolt_calls: list[str]) -> App:
    def authorize(**_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-gate", bot_user_id="UB", bot_id="B1")

    bolt = App(signing_secret=SECRET, authorize=authorize)

    @bolt.options("device_select")
    def by_bolt(ack: Any, body: dict[str, Any]) -> None:
        bolt_calls.append(body["action_id"])
        ack(options=[])

    @bolt.options("other_select")
    def other(ack: Any, body: dict[str, Any]) -> None:
        bolt_calls.append(body["action_id"])
        ack(options=[])

    return bolt


def test_a_signed_suggestion_is_answered_inline_with_the_signed_user(app: App, bolt_calls: list[str]) -> None:
    answer = Recorder()
    gate = SlackEventsHandler(app, signing_secret=SECRET, inline={"device_select": answer})
    body = block_suggestion("device_select", "device", "lap", "UREQ").encode()
    status, parsed = call(gate, body, signed(body))
    assert status == 200
    assert parsed == {"options": [{"text": {"type": "plain_text", "text": "UREQ"}, "value": "d1"}]}
    assert [b["value"] for b in answer.bodies] == ["lap"] and bolt_calls == []
    assert answer.bodies[0] == parse_body(body)


def test_other_action_ids_and_no_inline_answers_go_to_bolt(app: App, bolt_calls: list[str]) -> None:
    answer = Recorder()
    gate = SlackEventsHandler(app, signing_secret=SECRET, inline={"device_select": answer})
    body = block_suggestion("other_select", "b", "x", "UREQ").encode()
    assert call(gate, body, signed(body)) == (200, {"options": []})
    plain = SlackEventsHandler(app, signing_secret=SECRET)
    body = block_suggestion("device_select", "device", "x", "UREQ").encode()
    assert call(plain, body, signed(body)) == (200, {"options": []})
    assert bolt_calls == ["other_select", "device_select"] and answer.bodies == []


def test_a_bad_signature_or_a_malformed_payload_never_reaches_the_inline_answer(app: App) -> None:
    answer = Recorder()
    gate = SlackEventsHandler(app, signing_secret=SECRET, inline={"device_select": answer})
    body = block_suggestion("device_select", "device", "x", "UREQ").encode()
    assert call(gate, body, {**signed(body), "X-Slack-Signature": "v0=" + "0" * 64})[0] == 401
    payload = parse_body(body)
    payload["user"] = None
    tampered = form_payload(payload).encode()
    assert call(gate, tampered, signed(tampered))[0] == 400
    assert answer.bodies == []


def test_a_failing_inline_answer_is_a_500_and_logged(app: App, caplog: pytest.LogCaptureFixture) -> None:
    def broken(body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("index gone")

    gate = SlackEventsHandler(app, signing_secret=SECRET, inline={"device_select": broken})
    body = block_suggestion("device_select", "device", "x", "UREQ").encode()
    assert call(gate, body, signed(body))[0] == 500
    assert "inline answer" in caplog.text
