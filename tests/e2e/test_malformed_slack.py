"""Malformed and oversized Slack payloads through the real Bolt app, signed so they pass verification.

Each one must be answered without a crash — a 2xx from Bolt, or a clean 4xx — with no ERROR record (a
listener traceback) in the logs, and nothing written: no request, vote, notification, attribute or audit event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from sqlalchemy import delete, func, select

from app.db.tables import AttributeRow, AuditEventRow
from app.db.tables.access import AccessRequestRow, NotificationRow, PostedMessageRow, RequestStatus, VoteRow
from app.slack.ids import ActionId, BlockId, CallbackId
from tests.e2e.conftest import ADMIN, BOB, REQUESTER, AppUnderTest
from tests.e2e.test_access_flow import dm_message, form_state, open_modal, request_and_submit, submit
from tests.fakes.slack_payloads import (
    block_actions_in_message,
    block_actions_in_view,
    block_suggestion,
    form_payload,
    global_shortcut,
    modal_view,
    option,
    parse_body,
    select_state,
    slash_command,
    text_input_state,
    view_submission,
)

Build = Callable[[AppUnderTest], str]
QUIET_LOGGERS = ("app", "accessbot", "slack_bolt", "slack_sdk", "sqlalchemy", "tests")
"""Where a listener's failure would be logged (Bolt logs to ``accessbot.slack``)."""


# -- helpers ------------------------------------------------------------------------------------------


def tamper(body: str, change: Callable[[dict[str, Any]], None]) -> str:
    """Re-encode an interactive ``payload=`` body after ``change`` edited its JSON."""
    payload = parse_body(body)
    change(payload)
    return form_payload(payload)


def written_rows(app: AppUnderTest) -> dict[str, int]:
    """How many rows each table that a Slack request could write holds."""
    with app.ctx.db.session() as session:
        return {
            table.__tablename__: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (AccessRequestRow, VoteRow, NotificationRow, PostedMessageRow, AttributeRow, AuditEventRow)
        }


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in QUIET_LOGGERS
    ]


def post_and_check(app: AppUnderTest, caplog: pytest.LogCaptureFixture, body: str | bytes, **kw: Any) -> httpx.Response:
    """Post a signed body; assert a 2xx or clean 4xx answer, no ERROR logged and nothing written."""
    before = written_rows(app)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = app.slack.post(body, **kw)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert response.status_code in (400, 404, 413) or 200 <= response.status_code < 300, response.status_code
    assert errors_logged(caplog) == []
    assert written_rows(app) == before
    assert app.tailnet.writes == []
    return response


def payload_of(kind: str, **fields: Any) -> dict[str, Any]:
    """A minimal interactive payload of ``kind`` with ``fields``."""
    return {"type": kind, "team": {"id": "T0TEST"}, "api_app_id": "A0TEST", "token": "x", **fields}


def message_click(action_id: str, value: Any, user: str = BOB) -> str:
    body = block_actions_in_message(action_id, "1", user, f"D{user}", "1700000000.000100")
    return tamper(body, lambda p: p["actions"][0].__setitem__("value", value))


# -- cases that need no state ---------------------------------------------------------------------------


def _truncated(app: AppUnderTest) -> str:
    whole = json.dumps(parse_body(global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER)))
    return "payload=" + quote(whole[: len(whole) // 2])


UNPARSEABLE: dict[str, Build] = {
    "truncated JSON in payload=": _truncated,
    "payload= is not JSON": lambda app: "payload=" + quote("not json at all"),
    "payload= is a JSON list": lambda app: "payload=" + quote("[1, 2, 3]"),
    "payload= is a JSON string": lambda app: "payload=" + quote('"block_actions"'),
    "empty payload=": lambda app: "payload=",
    "two payload= fields": lambda app: "payload=%7B%7D&payload=" + quote("{"),
    "truncated Events API JSON": lambda app: '{"type": "event_callback", "event": {"type": "app_home_opened"',
}
"""Bodies Bolt cannot parse: a 400 ``{"message": ...}``."""

WRONG_TYPES: dict[str, Build] = {
    "Events API event is a string": lambda app: json.dumps(
        {"type": "event_callback", "team_id": "T0TEST", "api_app_id": "A0TEST", "event": "x"}
    ),
    "app_home_opened without a user": lambda app: json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0TEST",
            "api_app_id": "A0TEST",
            "event": {"type": "app_home_opened", "tab": "home"},
            "event_id": "Ev1",
            "event_time": 1,
        }
    ),
    "shortcut with user null": lambda app: tamper(
        global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER), lambda p: p.__setitem__("user", None)
    ),
    "shortcut with user a string": lambda app: tamper(
        global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER), lambda p: p.__setitem__("user", "UREQ")
    ),
    "shortcut without a trigger_id": lambda app: tamper(
        global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER), lambda p: p.pop("trigger_id")
    ),
    "shortcut with a trigger_id of the wrong type": lambda app: tamper(
        global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER), lambda p: p.__setitem__("trigger_id", {"x": 1})
    ),
    'actions: "x"': lambda app: tamper(message_click(ActionId.APPROVE, "1"), lambda p: p.__setitem__("actions", "x")),
    "actions is empty": lambda app: tamper(
        message_click(ActionId.APPROVE, "1"), lambda p: p.__setitem__("actions", [])
    ),
    "actions holds a string": lambda app: tamper(
        message_click(ActionId.APPROVE, "1"), lambda p: p.__setitem__("actions", ["approve_request"])
    ),
    "action id of the wrong type": lambda app: tamper(
        message_click(ActionId.APPROVE, "1"), lambda p: p["actions"][0].__setitem__("action_id", 7)
    ),
    "button click with user null": lambda app: tamper(
        message_click(ActionId.APPROVE, "1"), lambda p: p.__setitem__("user", None)
    ),
    "button click without a user id": lambda app: tamper(
        message_click(ActionId.DENY, "1"), lambda p: p.__setitem__("user", {"name": "bob"})
    ),
    "button click with channel a string": lambda app: tamper(
        message_click(ActionId.REVOKE, "1"), lambda p: p.__setitem__("channel", "D1")
    ),
    "view submission with view null": lambda app: tamper(
        view_submission(CallbackId.REQUEST_MODAL, REQUESTER, {}), lambda p: p.__setitem__("view", None)
    ),
    "view submission with user null": lambda app: tamper(
        view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app)), lambda p: p.__setitem__("user", None)
    ),
    "request modal with state null": lambda app: tamper(
        view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app)),
        lambda p: p["view"].__setitem__("state", None),
    ),
    "request modal with state.values a string": lambda app: tamper(
        view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app)),
        lambda p: p["view"].__setitem__("state", {"values": "x"}),
    ),
    "request modal with element states of the wrong types": lambda app: view_submission(
        CallbackId.REQUEST_MODAL,
        REQUESTER,
        {
            BlockId.DEVICE: {ActionId.DEVICE_SELECT: {"selected_option": "x"}},
            BlockId.APPROVER: {ActionId.APPROVER_SELECT: {"selected_options": ["UBOB", None, 3]}},
            BlockId.REASON: {ActionId.REASON_INPUT: {"value": ["why"]}},
        },
    ),
    "request modal with a block state that is not an object": lambda app: view_submission(
        CallbackId.REQUEST_MODAL, REQUESTER, {**form_state(app), BlockId.PROFILE: "prod"}
    ),
    "request modal with private_metadata not text": lambda app: tamper(
        view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app)),
        lambda p: p["view"].__setitem__("private_metadata", {"extends": 1}),
    ),
    "block_suggestion with a query of the wrong type": lambda app: tamper(
        block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, "", REQUESTER),
        lambda p: p.__setitem__("value", {"q": 1}),
    ),
    "block_suggestion with user null": lambda app: tamper(
        block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, "rita", REQUESTER),
        lambda p: p.__setitem__("user", None),
    ),
    "slash command without user_id": lambda app: urlencode({"command": "/posture", "text": "grants"}),
    "slash command request without a trigger_id": lambda app: urlencode(
        {"command": "/posture", "text": "request", "user_id": REQUESTER, "team_id": "T0TEST"}
    ),
}
"""Signed payloads with fields of the wrong JSON types: a 400 ``{"message": ...}`` naming the field."""

UNKNOWN: dict[str, Build] = {
    "unknown payload type": lambda app: form_payload(payload_of("nonsense", user={"id": REQUESTER})),
    "no type at all": lambda app: form_payload({"user": {"id": REQUESTER}}),
    "payload= with invalid UTF-8": lambda app: "payload=%7B%22type%22%3A%22%FF%FE%22%7D",
    "unknown shortcut callback id": lambda app: global_shortcut("no_such_shortcut", REQUESTER),
    "shortcut callback id of the wrong type": lambda app: tamper(
        global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER), lambda p: p.__setitem__("callback_id", ["x"])
    ),
    "unknown action id": lambda app: message_click("no_such_action", "1"),
    "unknown view callback id": lambda app: view_submission("no_such_view", REQUESTER, {}),
    "block_suggestion for an unknown action id": lambda app: block_suggestion("no_such_select", "b", "x", REQUESTER),
    "unknown slash command": lambda app: slash_command("/nope", "x", REQUESTER, "C1", "https://hooks.invalid/1"),
}
"""Well-formed payloads nobody listens to: Bolt's 404."""

ODD_BUT_WELL_FORMED: dict[str, tuple[Build, str]] = {
    "request modal without view.state": (
        lambda app: tamper(
            view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app)), lambda p: p["view"].pop("state")
        ),
        "Choose one of the offered access profiles",
    ),
    "request modal with a 200-KB reason": (
        lambda app: view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app, reason="r" * 200_000)),
        "Keep the reason to 200 characters",
    ),
    "request modal with a NUL and a lone surrogate in the reason": (
        lambda app: view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app, reason="fix \x00 it \ud800")),
        "cannot be stored",
    ),
    "request modal with 5,000 approvers chosen": (
        lambda app: view_submission(
            CallbackId.REQUEST_MODAL,
            REQUESTER,
            {
                **form_state(app),
                BlockId.APPROVER: {
                    ActionId.APPROVER_SELECT: {
                        "type": "multi_static_select",
                        "selected_options": [option(f"U{i:08d}") for i in range(5_000)],
                    }
                },
            },
        ),
        "Only the approvers",
    ),
    "request modal with 2,000 blocks of state": (
        lambda app: view_submission(
            CallbackId.REQUEST_MODAL,
            REQUESTER,
            {**form_state(app, reason=""), **{f"b{i}": {"a": select_state(str(i))} for i in range(2_000)}},
        ),
        "Say why you need access",
    ),
    "request modal with a non-numeric duration": (
        lambda app: view_submission(
            CallbackId.REQUEST_MODAL,
            REQUESTER,
            {**form_state(app), BlockId.DURATION: {ActionId.DURATION_SELECT: select_state("²")}},
        ),
        "Choose a duration",
    ),
    "request modal with a 400-digit duration": (
        lambda app: view_submission(
            CallbackId.REQUEST_MODAL,
            REQUESTER,
            {**form_state(app), BlockId.DURATION: {ActionId.DURATION_SELECT: select_state("9" * 400)}},
        ),
        "Choose a duration",
    ),
    "request modal with a 5,000-digit device id": (
        lambda app: view_submission(
            CallbackId.REQUEST_MODAL,
            REQUESTER,
            {
                **form_state(app),
                BlockId.DEVICE: {ActionId.DEVICE_SELECT: select_state("9" * 5000, element_type="external_select")},
            },
        ),
        "no longer in the tailnet",
    ),
    "deny form for a request id beyond any integer column": (
        lambda app: view_submission(
            CallbackId.DENY_MODAL, BOB, {}, private_metadata=json.dumps({"request_id": 10**30})
        ),
        "does not exist",
    ),
    "deny form for request id 2^31": (
        lambda app: view_submission(CallbackId.DENY_MODAL, BOB, {}, private_metadata=json.dumps({"request_id": 2**31})),
        "does not exist",
    ),
    "deny form for a negative request id": (
        lambda app: view_submission(CallbackId.DENY_MODAL, BOB, {}, private_metadata=json.dumps({"request_id": -5})),
        "does not exist",
    ),
    "deny form without private_metadata": (lambda app: view_submission(CallbackId.DENY_MODAL, BOB, {}), ""),
    "deny form with a fractional request id": (
        lambda app: view_submission(CallbackId.DENY_MODAL, BOB, {}, private_metadata=json.dumps({"request_id": 1.5})),
        "",
    ),
    "deny form with metadata a list": (
        lambda app: view_submission(CallbackId.DENY_MODAL, BOB, {}, private_metadata="[1]"),
        "",
    ),
    "connect form with metadata not JSON": (
        lambda app: view_submission(CallbackId.CONNECT_MODAL, ADMIN, {}, private_metadata="{"),
        "unknown vendor",
    ),
    "connect form by an admin without input blocks": (
        lambda app: view_submission(
            CallbackId.CONNECT_MODAL, ADMIN, {}, private_metadata=json.dumps({"vendor": "huntress"})
        ),
        "missing required fields",
    ),
    "connect form by a non-admin without input blocks": (
        lambda app: view_submission(CallbackId.CONNECT_MODAL, BOB, {}, private_metadata=json.dumps({"vendor": 5})),
        "Only accessbot admins",
    ),
    "profile select in a message (no view)": (
        lambda app: tamper(
            block_actions_in_view(ActionId.PROFILE_SELECT, BlockId.PROFILE, REQUESTER, selected_value="prod"),
            lambda p: p.pop("view"),
        ),
        "",
    ),
    "profile select in a modal Slack no longer has": (
        lambda app: block_actions_in_view(ActionId.PROFILE_SELECT, BlockId.PROFILE, REQUESTER, selected_value="prod"),
        "",
    ),
    "block_suggestion with a 5,000-character query": (
        lambda app: block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, "x" * 5000, REQUESTER),
        '"options": []',
    ),
    "block_suggestion with 5,000 spaces": (
        lambda app: block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, " " * 5000, REQUESTER),
        "rita-laptop",
    ),
    "slash command with 100 KB of text": (
        lambda app: slash_command("/posture", "check " + "x" * 100_000, REQUESTER, "C1", "https://hooks.invalid/1"),
        "no device",
    ),
    "button click with channel null": (
        lambda app: tamper(message_click(ActionId.REVOKE, "1"), lambda p: p.__setitem__("channel", None)),
        "",
    ),
}
"""Well-formed payloads with odd or oversized contents: a 2xx, and the answer contains the text given."""

BUTTON_VALUES = ["abc", "9" * 50, "99999999999", "-1", "1e5", "²", "١٢", "0x10", " 7", "", None, 7, [1], {"id": 1}]
"""Button values that are not a request id (``²`` and ``١٢`` are digits to ``str.isdigit``), or none that exists."""


def check_all(app: AppUnderTest, caplog: pytest.LogCaptureFixture, cases: dict[str, Build], status: int) -> None:
    """Post every case; each must be answered ``status`` with a ``{"message": ...}`` body when 400."""
    failures: list[str] = []
    for name, build in cases.items():
        try:
            response = post_and_check(app, caplog, build(app))
            assert response.status_code == status, (response.status_code, response.text[:200])
            if status == 400:
                assert set(response.json()) == {"message"} and response.json()["message"], response.text
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert failures == []


def test_bodies_that_do_not_parse_are_400(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    check_all(app_server, caplog, UNPARSEABLE, 400)


def test_fields_of_the_wrong_type_are_400(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    check_all(app_server, caplog, WRONG_TYPES, 400)
    assert app_server.fake.calls() == []  # not a single Slack API call was made for any of them


def test_unknown_ids_are_bolts_404(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    check_all(app_server, caplog, UNKNOWN, 404)


def test_odd_and_oversized_contents_are_answered(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    failures: list[str] = []
    for name, (build, expected) in ODD_BUT_WELL_FORMED.items():
        try:
            response = post_and_check(app_server, caplog, build(app_server))
            assert 200 <= response.status_code < 300, (response.status_code, response.text[:200])
            assert expected in response.text, response.text[:300]
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert failures == []
    [refresh] = app_server.fake.calls("views.update")  # of the modal Slack no longer has: refused, and let be
    assert not refresh.ok


def test_button_values_that_are_no_request_id(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """Approve, Deny, Retry, Revoke and Extend with a value that names no request: told so, nothing changes."""
    app = app_server
    failures: list[str] = []
    for value in BUTTON_VALUES:
        for action in (ActionId.APPROVE, ActionId.DENY, ActionId.RETRY, ActionId.REVOKE, ActionId.EXTEND):
            mark = len(app.fake.calls("chat.postEphemeral"))
            try:
                response = post_and_check(app, caplog, message_click(action, value))
                assert response.status_code == 200
                told = app.fake.calls("chat.postEphemeral")[mark:]
                assert len(told) == 1 and told[0].params["user"] == BOB
                assert any(w in told[0].params["text"] for w in ("malformed", "does not exist")), told[0].params
            except AssertionError as exc:
                failures.append(f"{action} {value!r}: {exc}")
    assert failures == []


# -- cases that need state ------------------------------------------------------------------------------


def test_submission_for_a_deleted_request(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """Approve, Deny and the deny form of a request that was deleted meanwhile are refused cleanly."""
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    deny_click = block_actions_in_message(ActionId.DENY, str(request_id), BOB, channel, ts)
    assert app.slack.post(deny_click).status_code == 200
    deny_modal = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    with app.ctx.db.session() as session:
        session.execute(delete(AccessRequestRow).where(AccessRequestRow.id == request_id))
    state = {BlockId.DENY_REASON: {ActionId.DENY_REASON_INPUT: text_input_state("no")}}
    answer = post_and_check(app, caplog, view_submission(CallbackId.DENY_MODAL, BOB, state, view=deny_modal))
    assert "does not exist" in json.dumps(answer.json())
    for action in (ActionId.APPROVE, ActionId.DENY, ActionId.RETRY, ActionId.REVOKE, ActionId.EXTEND):
        post_and_check(app, caplog, block_actions_in_message(action, str(request_id), BOB, channel, ts))
    assert "does not exist" in app.fake.last("chat.postEphemeral").params["text"]


def test_a_real_modal_submitted_with_oversized_fields(
    app_server: AppUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    """The modal the app opened, submitted with a 200-KB reason: a field error, nothing stored."""
    app = app_server
    view = open_modal(app)
    before = written_rows(app)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = submit(app, view, form_state(app, reason="why " * 50_000))
    assert response.status_code == 200
    assert "200 characters" in response.json()["errors"][BlockId.REASON]
    assert errors_logged(caplog) == []
    assert written_rows(app) == before


def test_a_modal_submitted_twice_after_the_request_was_decided(
    app_server: AppUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    """A deny form for a request already approved says so on the field and changes nothing."""
    app = app_server
    request_id = request_and_submit(app)
    channel, ts = dm_message(app, BOB)
    app.slack.post(block_actions_in_message(ActionId.DENY, str(request_id), BOB, channel, ts))
    deny_modal = app.fake.view(app.fake.last("views.open").response["view"]["id"])
    app.slack.post(block_actions_in_message(ActionId.APPROVE, str(request_id), BOB, channel, ts))
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED
    app.tailnet.writes.clear()
    answer = post_and_check(app, caplog, view_submission(CallbackId.DENY_MODAL, BOB, {}, view=deny_modal))
    assert "already approved" in json.dumps(answer.json())
    assert app.ctx.access.get(request_id).status == RequestStatus.GRANTED


def test_oversized_body_as_a_whole(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """A signed 5-MB interactive payload is refused as too large (413 ``{"message"}``), not parsed."""
    body = view_submission(CallbackId.REQUEST_MODAL, REQUESTER, form_state(app_server, reason="x" * 5_000_000))
    response = post_and_check(app_server, caplog, body)
    assert response.status_code == 413
    assert "larger than" in response.json()["message"]


def test_wrong_content_type(app_server: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    for content_type in ("application/json", "text/plain", "multipart/form-data; boundary=x"):
        body = global_shortcut(CallbackId.REQUEST_SHORTCUT, REQUESTER)  # a fresh trigger id each time
        post_and_check(app_server, caplog, body, content_type=content_type)
    post_and_check(app_server, caplog, modal_view_json(), content_type="application/x-www-form-urlencoded")


def modal_view_json() -> str:
    return json.dumps(modal_view(callback_id=CallbackId.REQUEST_MODAL))
