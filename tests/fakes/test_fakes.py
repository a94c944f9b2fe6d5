"""The e2e harness itself: FakeSlackAPI driven by the real slack_sdk, payload builders, signing."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from slack_bolt import Ack, App, BoltContext
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request.internals import parse_body as bolt_parse_body
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from tests.fakes import slack_payloads as sp
from tests.fakes.slack_api import (
    FakeSlackAPI,
    blocks_problems,
    options_response_problems,
    view_problems,
)

TOKEN = "xoxb-test-token"
SECRET = "test-signing-secret"
SECTION = [{"type": "section", "block_id": "b1", "text": {"type": "mrkdwn", "text": "*hello*"}}]
MODAL = {
    "type": "modal",
    "callback_id": "request_access",
    "title": {"type": "plain_text", "text": "Request access"},
    "submit": {"type": "plain_text", "text": "Request"},
    "private_metadata": "m1",
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason"},
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=TOKEN) as api:
        api.add_user("UREQ", "req@example.com", "req", "Rita Requester")
        api.add_user("UBOB", "bob@example.com", "bob")
        api.add_user("UCAROL", "carol@example.com", "carol")
        api.add_group("S0SRE", "sre", ["UBOB", "UCAROL"])
        api.add_channel("C0ACCESS", "access-requests")
        api.add_channel("C1", "general")
        yield api


@pytest.fixture
def client(fake: FakeSlackAPI) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.base_url)


def error_of(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


# ------------------------------------------------------------------------------------------------
# server basics
# ------------------------------------------------------------------------------------------------


def test_base_url_joins_methods_like_slack_sdk(fake: FakeSlackAPI, client: WebClient) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/api/"
    resp = client.auth_test()
    assert resp["user_id"] == "UBOT" and resp["team_id"] == "T0TEST" and resp["bot_id"] == "BBOT"
    assert resp.api_url == fake.base_url + "auth.test"
    assert fake.last().method == "auth.test"


def test_start_stop_and_context_manager() -> None:
    api = FakeSlackAPI().start()
    port = api.port
    assert WebClient(token="xoxb-test-token", base_url=api.base_url).auth_test()["ok"]
    api.stop()
    api.stop()
    with pytest.raises(RuntimeError):
        _ = api.port
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/api/auth.test", trust_env=False)


def test_auth_is_required(fake: FakeSlackAPI) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-wrong", base_url=fake.base_url).auth_test()
    assert error_of(wrong) == "invalid_auth"
    bare = httpx.post(fake.base_url + "auth.test", trust_env=False)
    assert bare.status_code == 200 and bare.json() == {"ok": False, "error": "not_authed"}
    assert [c.ok for c in fake.calls("auth.test")] == [False, False]


def test_unknown_method(client: WebClient, fake: FakeSlackAPI) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.api_call("nope.nothing")
    assert error_of(exc) == "unknown_method"
    assert fake.last().method == "nope.nothing"


def test_form_body_with_json_fields_is_decoded(fake: FakeSlackAPI) -> None:
    blocks = json.dumps(SECTION)
    resp = httpx.post(
        fake.base_url + "chat.postMessage",
        data={"channel": "C1", "text": "hi", "blocks": blocks},
        headers={"Authorization": f"Bearer {TOKEN}"},
        trust_env=False,
    )
    assert resp.json()["ok"] is True
    call = fake.last("chat.postMessage")
    assert call.params == {"channel": "C1", "text": "hi", "blocks": SECTION}


# ------------------------------------------------------------------------------------------------
# chat and conversations
# ------------------------------------------------------------------------------------------------


def test_post_message_returns_increasing_ts_and_records(client: WebClient, fake: FakeSlackAPI) -> None:
    first = client.chat_postMessage(channel="C0ACCESS", text="hello", blocks=SECTION)
    second = client.chat_postMessage(channel="C0ACCESS", text="again")
    assert first["channel"] == "C0ACCESS"
    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["text"] == "hello" and first["message"]["blocks"] == SECTION
    call = fake.calls("chat.postMessage")[0]
    assert call.params["blocks"] == SECTION and call.params["channel"] == "C0ACCESS"
    assert call.seq < fake.calls("chat.postMessage")[1].seq and call.at <= time.time()
    assert [m["text"] for m in fake.messages("C0ACCESS")] == ["hello", "again"]


def test_post_to_user_id_lands_in_dm(client: WebClient, fake: FakeSlackAPI) -> None:
    assert client.chat_postMessage(channel="UBOB", text="please approve")["channel"] == "DUBOB"
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="UNOBODY", text="x")
    assert error_of(exc) == "channel_not_found"
    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning, match="text"):
        client.chat_postMessage(channel="C1")
    assert error_of(empty) == "no_text"


def test_posts_to_channels_need_the_bot_in_them_like_slack(client: WebClient, fake: FakeSlackAPI) -> None:
    fake.add_channel("COUT", "announcements", bot_member=False)
    fake.add_channel("GSECRET", "secret", bot_member=False, is_private=True)
    fake.add_channel("COLD", "old", archived=True)
    refused = {}
    for channel in ("COUT", "CNOWHERE", "GSECRET", "COLD", "#nowhere"):
        with pytest.raises(SlackApiError) as exc:
            client.chat_postMessage(channel=channel, text="granted")
        refused[channel] = error_of(exc)
    assert refused == {
        "COUT": "not_in_channel",
        "CNOWHERE": "channel_not_found",
        "GSECRET": "channel_not_found",  # a private channel the bot is not in is invisible to it
        "COLD": "is_archived",
        "#nowhere": "channel_not_found",
    }
    assert fake.messages("COUT") == []

    fake.invite_bot("COUT")
    assert client.chat_postMessage(channel="COUT", text="granted")["channel"] == "COUT"
    assert client.chat_postMessage(channel="#announcements", text="by name")["channel"] == "COUT"
    fake.remove_bot("COUT")
    with pytest.raises(SlackApiError) as removed:
        client.chat_postMessage(channel="COUT", text="again")
    assert error_of(removed) == "not_in_channel"

    fake.chat_write_public = True  # the scope reaches public channels only
    assert client.chat_postMessage(channel="COUT", text="public")["ok"]
    with pytest.raises(SlackApiError) as private:
        client.chat_postMessage(channel="GSECRET", text="private")
    assert error_of(private) == "channel_not_found"

    # DMs are not channels: user ids, conversations.open's D… and group-DM G… ids stay allowed
    assert client.chat_postMessage(channel="UBOB", text="dm")["channel"] == "DUBOB"
    group_dm = client.conversations_open(users="UBOB,UCAROL")["channel"]["id"]
    assert client.chat_postMessage(channel=group_dm, text="group dm")["channel"] == group_dm


def test_open_dm(client: WebClient, fake: FakeSlackAPI) -> None:
    assert client.conversations_open(users="UREQ")["channel"]["id"] == "DUREQ"
    assert client.conversations_open(users=["UREQ"])["channel"]["id"] == "DUREQ"
    assert fake.last("conversations.open").params == {"users": "UREQ"}
    with pytest.raises(SlackApiError) as exc:
        client.conversations_open(users="UGHOST")
    assert error_of(exc) == "user_not_found"


def test_update_and_delete(client: WebClient, fake: FakeSlackAPI) -> None:
    dm = client.conversations_open(users="UBOB")["channel"]["id"]
    posted = client.chat_postMessage(channel=dm, text="pending", blocks=SECTION)
    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved"}}]
    updated = client.chat_update(channel=dm, ts=posted["ts"], text="approved", blocks=new_blocks)
    assert updated["ts"] == posted["ts"] and updated["message"]["blocks"] == new_blocks
    assert fake.message(dm, posted["ts"])["text"] == "approved"
    with pytest.raises(SlackApiError) as by_user:
        client.chat_update(channel="UBOB", ts=posted["ts"], text="x")
    assert error_of(by_user) == "channel_not_found"
    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel=dm, ts="1.000000", text="x")
    assert error_of(missing) == "message_not_found"
    fake.add_message("C9", "1690000000.000001", "seeded")
    assert client.chat_update(channel="C9", ts="1690000000.000001", text="edited")["ok"]
    assert client.chat_delete(channel=dm, ts=posted["ts"])["ok"]
    assert fake.messages(dm) == []
    with pytest.raises(SlackApiError):
        client.chat_delete(channel=dm, ts=posted["ts"])


def test_post_ephemeral(client: WebClient, fake: FakeSlackAPI) -> None:
    resp = client.chat_postEphemeral(channel="C1", user="UREQ", text="only you")
    assert resp["message_ts"]
    assert fake.last("chat.postEphemeral").params["user"] == "UREQ"


def test_message_blocks_are_checked(client: WebClient) -> None:
    too_many = [{"type": "divider"}] * 51
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="C1", text="x", blocks=too_many)
    assert error_of(exc) == "invalid_blocks"
    assert "no more than 50" in exc.value.response["response_metadata"]["messages"][0]


# ------------------------------------------------------------------------------------------------
# views
# ------------------------------------------------------------------------------------------------


def test_views_open_update_push(client: WebClient, fake: FakeSlackAPI) -> None:
    opened = client.views_open(trigger_id="t1", view=MODAL)["view"]
    assert opened["id"].startswith("V") and opened["hash"]
    assert opened["callback_id"] == "request_access" and opened["private_metadata"] == "m1"
    assert fake.last("views.open").params["view"] == MODAL
    assert fake.view(opened["id"])["blocks"] == MODAL["blocks"]

    changed = {**MODAL, "private_metadata": "m2"}
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=changed)["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=changed)
    assert error_of(stale) == "hash_conflict"
    with pytest.raises(SlackApiError) as unknown:
        client.views_update(view_id="VNOPE", view=changed)
    assert error_of(unknown) == "not_found"

    pushed = client.views_push(trigger_id="t2", view=MODAL)["view"]
    assert pushed["id"] != opened["id"]


def test_trigger_ids_are_single_use(client: WebClient) -> None:
    client.views_open(trigger_id="t1", view=MODAL)
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id="t1", view=MODAL)
    assert error_of(exc) == "exchanged_trigger_id"


def test_views_are_checked_against_slack_limits(client: WebClient) -> None:
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id="t1", view=long_title)
    assert error_of(exc) == "invalid_arguments"
    assert "/view/title/text" in exc.value.response["response_metadata"]["messages"][0]
    assert view_problems({**MODAL, "private_metadata": "x" * 3001})
    assert view_problems({**MODAL, "submit": None})  # input blocks need a submit button
    assert view_problems({**MODAL, "blocks": [{"type": "divider"}] * 101})
    assert not view_problems(MODAL)


def test_views_publish_keeps_one_home_per_user(client: WebClient, fake: FakeSlackAPI) -> None:
    home = {"type": "home", "blocks": SECTION}
    first = client.views_publish(user_id="UREQ", view=home)["view"]
    second = client.views_publish(user_id="UREQ", view={"type": "home", "blocks": []})["view"]
    assert first["id"] == second["id"] and fake.home_view("UREQ")["blocks"] == []
    with pytest.raises(SlackApiError) as exc:
        client.views_publish(user_id="UREQ", view=MODAL)
    assert error_of(exc) == "invalid_arguments"


def test_block_checks() -> None:
    select = {
        "type": "static_select",
        "action_id": "s",
        "options": [sp.option(str(i)) for i in range(101)],
    }
    problems = blocks_problems([{"type": "actions", "elements": [select]}], 100)
    assert any("no more than 100" in p for p in problems)
    long_option = [{"type": "actions", "elements": [{**select, "options": [sp.option("v", "t" * 76)]}]}]
    assert any("76 characters" in p for p in blocks_problems(long_option, 100))
    button = {"type": "button", "action_id": "b", "text": {"type": "plain_text", "text": "Go"}, "value": "v" * 2001}
    assert blocks_problems([{"type": "actions", "elements": [button]}], 100)
    empty = [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}]
    assert blocks_problems(empty, 100)
    dupes = [{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]
    assert blocks_problems(dupes, 100)
    assert options_response_problems({"options": [sp.option("a")]}) == []
    groups = {"option_groups": [{"label": {"type": "plain_text", "text": "G"}, "options": [sp.option("v" * 151)]}]}
    assert options_response_problems(groups)
    assert options_response_problems({})


# ------------------------------------------------------------------------------------------------
# Block Kit limits: each one accepted at the limit and refused one past it
# ------------------------------------------------------------------------------------------------


def _pt(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _opt(text: str = "a", value: str = "a", **extra: Any) -> dict[str, Any]:
    return {"text": _pt(text), "value": value, **extra}


def _in_actions(element: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "actions", "elements": [element]}]


def _select(**extra: Any) -> dict[str, Any]:
    return {"type": "static_select", "action_id": "s", "options": [_opt()], **extra}


def _button(**extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": "b", "text": _pt("Go"), "value": "v", **extra}


def _input(**extra: Any) -> list[dict[str, Any]]:
    block = {"type": "input", "label": _pt("L"), "element": {"type": "plain_text_input", "action_id": "i"}}
    return [{**block, **extra}]


BLOCK_LIMITS: list[tuple[str, Callable[[int], list[dict[str, Any]]], int]] = [
    ("message blocks", lambda n: [{"type": "divider"}] * n, 50),
    ("section text", lambda n: [{"type": "section", "text": _md("x" * n)}], 3000),
    (
        "section text in UTF-16 units",
        lambda n: [{"type": "section", "text": _md("😀" * (n // 2) + "x" * (n % 2))}],
        3000,
    ),
    ("section fields", lambda n: [{"type": "section", "fields": [_md("f")] * n}], 10),
    ("section field text", lambda n: [{"type": "section", "fields": [_md("x" * n)]}], 2000),
    ("header text", lambda n: [{"type": "header", "text": _pt("x" * n)}], 150),
    ("context elements", lambda n: [{"type": "context", "elements": [_md("c")] * n}], 10),
    ("context element text", lambda n: [{"type": "context", "elements": [_md("x" * n)]}], 3000),
    (
        "actions elements",
        lambda n: [{"type": "actions", "elements": [_button(action_id=f"b{i}") for i in range(n)]}],
        25,
    ),
    ("input label", lambda n: _input(label=_pt("x" * n)), 2000),
    ("input hint", lambda n: _input(hint=_pt("x" * n)), 2000),
    ("select placeholder", lambda n: _in_actions(_select(placeholder=_pt("x" * n))), 150),
    ("button text", lambda n: _in_actions(_button(text=_pt("x" * n))), 75),
    ("button value", lambda n: _in_actions(_button(value="v" * n)), 2000),
    ("button url", lambda n: _in_actions(_button(url="https://x.io/" + "p" * (n - 13))), 3000),
    ("option text", lambda n: _in_actions(_select(options=[_opt("x" * n)])), 75),
    ("option value", lambda n: _in_actions(_select(options=[_opt(value="v" * n)])), 150),
    ("option description", lambda n: _in_actions(_select(options=[_opt(description=_pt("x" * n))])), 75),
    ("options", lambda n: _in_actions(_select(options=[_opt(str(i), str(i)) for i in range(n)])), 100),
    (
        "option groups",
        lambda n: _in_actions(
            {"type": "static_select", "action_id": "s", "option_groups": [{"label": _pt("G"), "options": [_opt()]}] * n}
        ),
        100,
    ),
    (
        "option group label",
        lambda n: _in_actions(
            {"type": "static_select", "action_id": "s", "option_groups": [{"label": _pt("x" * n), "options": [_opt()]}]}
        ),
        75,
    ),
    ("action_id", lambda n: _in_actions(_button(action_id="a" * n)), 255),
    ("block_id", lambda n: [{"type": "divider", "block_id": "b" * n}], 255),
    (
        "text input max_length",
        lambda n: _input(element={"type": "plain_text_input", "action_id": "i", "max_length": n}),
        3000,
    ),
    (
        "confirm title",
        lambda n: _in_actions(
            _button(confirm={"title": _pt("x" * n), "text": _md("t"), "confirm": _pt("y"), "deny": _pt("n")})
        ),
        100,
    ),
    (
        "confirm text",
        lambda n: _in_actions(
            _button(confirm={"title": _pt("t"), "text": _md("x" * n), "confirm": _pt("y"), "deny": _pt("n")})
        ),
        300,
    ),
    (
        "confirm button",
        lambda n: _in_actions(
            _button(confirm={"title": _pt("t"), "text": _md("t"), "confirm": _pt("x" * n), "deny": _pt("n")})
        ),
        30,
    ),
]


@pytest.mark.parametrize(
    ("build", "limit"), [(b, n) for _, b, n in BLOCK_LIMITS], ids=[name for name, _, _ in BLOCK_LIMITS]
)
def test_each_block_limit_is_enforced(build: Callable[[int], list[dict[str, Any]]], limit: int) -> None:
    assert blocks_problems(build(limit), 50) == []
    assert blocks_problems(build(limit + 1), 50) != []


@pytest.mark.parametrize(
    "blocks",
    [
        pytest.param([{"type": "section"}], id="section without text or fields"),
        pytest.param([{"type": "header", "text": _md("x")}], id="header in mrkdwn"),
        pytest.param(_input(label=_md("x")), id="input label in mrkdwn"),
        pytest.param(_input(element=None), id="input without element"),
        pytest.param([{"type": "context", "elements": []}], id="empty context"),
        pytest.param(_in_actions(_select(initial_option=_opt("b", "b"))), id="initial_option not offered"),
        pytest.param(_in_actions(_select(initial_option=_opt("other text", "a"))), id="initial_option text differs"),
        pytest.param(
            _in_actions({**_select(), "type": "multi_static_select", "initial_options": [_opt(), _opt("z", "z")]}),
            id="initial_options not offered",
        ),
        pytest.param(
            _in_actions(
                {
                    "type": "static_select",
                    "action_id": "s",
                    "option_groups": [{"label": _pt("G"), "options": [_opt()]}],
                    "initial_option": _opt("b", "b"),
                }
            ),
            id="initial_option not in option groups",
        ),
        pytest.param(_in_actions(_select(options=[{"text": _pt("a")}])), id="option without value"),
        pytest.param(_in_actions(_button(text=None)), id="button without text"),
        pytest.param(
            _input(element={"type": "plain_text_input", "action_id": "i", "max_length": 0}), id="max_length 0"
        ),
        pytest.param([{"type": "section", "text": _md("")}], id="empty text"),
    ],
)
def test_shapes_slack_refuses(blocks: list[dict[str, Any]]) -> None:
    assert blocks_problems(blocks, 100)


def test_a_static_selects_initial_option_among_its_options_or_groups_passes() -> None:
    grouped = {
        "type": "static_select",
        "action_id": "s",
        "option_groups": [{"label": _pt("G"), "options": [_opt(), _opt("b", "b")]}],
        "initial_option": _opt("b", "b"),
    }
    multi = {**_select(), "type": "multi_static_select", "initial_options": [_opt()]}
    external = {"type": "external_select", "action_id": "e", "initial_option": _opt("z", "z")}  # checked at load
    assert blocks_problems([{"type": "actions", "elements": [grouped, multi, external]}], 50) == []


VIEW_LIMITS: list[tuple[str, Callable[[int], dict[str, Any]], int]] = [
    ("view blocks", lambda n: {**MODAL, "blocks": [*MODAL["blocks"], *[{"type": "divider"}] * (n - 1)]}, 100),
    ("home blocks", lambda n: {"type": "home", "blocks": [{"type": "divider"}] * n}, 100),
    ("title", lambda n: {**MODAL, "title": _pt("x" * n)}, 24),
    ("submit", lambda n: {**MODAL, "submit": _pt("x" * n)}, 24),
    ("close", lambda n: {**MODAL, "close": _pt("x" * n)}, 24),
    ("private_metadata", lambda n: {**MODAL, "private_metadata": "m" * n}, 3000),
    ("callback_id", lambda n: {**MODAL, "callback_id": "c" * n}, 255),
    ("external_id", lambda n: {**MODAL, "external_id": "e" * n}, 255),
]


@pytest.mark.parametrize(
    ("build", "limit"), [(b, n) for _, b, n in VIEW_LIMITS], ids=[name for name, _, _ in VIEW_LIMITS]
)
def test_each_view_limit_is_enforced(build: Callable[[int], dict[str, Any]], limit: int) -> None:
    assert view_problems(build(limit)) == []
    assert view_problems(build(limit + 1)) != []


def test_view_text_must_be_plain() -> None:
    assert view_problems({**MODAL, "title": _md("Title")})
    assert view_problems({**MODAL, "close": _md("Close")})


OPTIONS_LIMITS: list[tuple[str, Callable[[int], dict[str, Any]], int]] = [
    ("options", lambda n: {"options": [_opt(str(i), str(i)) for i in range(n)]}, 100),
    ("option text", lambda n: {"options": [_opt("x" * n)]}, 75),
    ("option value", lambda n: {"options": [_opt(value="v" * n)]}, 150),
    ("option description", lambda n: {"options": [_opt(description=_pt("x" * n))]}, 75),
    ("option groups", lambda n: {"option_groups": [{"label": _pt("G"), "options": [_opt()]}] * n}, 100),
    ("options in a group", lambda n: {"option_groups": [{"label": _pt("G"), "options": [_opt()] * n}]}, 100),
    ("group label", lambda n: {"option_groups": [{"label": _pt("x" * n), "options": [_opt()]}]}, 75),
]


@pytest.mark.parametrize(
    ("build", "limit"), [(b, n) for _, b, n in OPTIONS_LIMITS], ids=[name for name, _, _ in OPTIONS_LIMITS]
)
def test_each_options_response_limit_is_enforced(build: Callable[[int], dict[str, Any]], limit: int) -> None:
    assert options_response_problems(build(limit)) == []
    assert options_response_problems(build(limit + 1)) != []


def test_problems_name_the_place_like_slack() -> None:
    problems = blocks_problems([{"type": "section", "fields": [_md("x" * 2001)]}], 50)
    assert problems == ["[ERROR] must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]"]


# ------------------------------------------------------------------------------------------------
# directory
# ------------------------------------------------------------------------------------------------


def test_users(client: WebClient) -> None:
    user = client.users_lookupByEmail(email="Req@Example.com")["user"]
    assert user["id"] == "UREQ" and user["profile"]["email"] == "req@example.com"
    assert user["profile"]["real_name"] == "Rita Requester"
    info = client.users_info(user="UBOB")["user"]
    assert info["name"] == "bob" and info["is_bot"] is False
    assert client.users_info(user="UBOT")["user"]["is_bot"] is True
    with pytest.raises(SlackApiError) as by_email:
        client.users_lookupByEmail(email="nobody@example.com")
    assert error_of(by_email) == "users_not_found"
    with pytest.raises(SlackApiError) as by_id:
        client.users_info(user="UNOBODY")
    assert error_of(by_id) == "user_not_found"
    assert {"UREQ", "UBOB", "UCAROL", "UBOT"} <= {m["id"] for m in client.users_list()["members"]}


def test_usergroups(client: WebClient) -> None:
    groups = client.usergroups_list()["usergroups"]
    assert [(g["id"], g["handle"]) for g in groups] == [("S0SRE", "sre")]
    assert "users" not in groups[0]
    with_users = client.usergroups_list(include_users=True, include_count=True)["usergroups"][0]
    assert with_users["users"] == ["UBOB", "UCAROL"] and with_users["user_count"] == 2
    assert client.usergroups_users_list(usergroup="S0SRE")["users"] == ["UBOB", "UCAROL"]
    with pytest.raises(SlackApiError) as exc:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert error_of(exc) == "no_such_subteam"


# ------------------------------------------------------------------------------------------------
# failure injection, response_url, waiting
# ------------------------------------------------------------------------------------------------


def test_fail_next(client: WebClient, fake: FakeSlackAPI) -> None:
    fake.fail_next("chat.postMessage")
    with pytest.raises(SlackApiError) as first:
        client.chat_postMessage(channel="C1", text="x")
    assert error_of(first) == "ratelimited" and first.value.response.status_code == 200
    assert client.chat_postMessage(channel="C1", text="x")["ok"]

    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="C1", text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"

    fake.fail_next("users.info", error="internal_error", status=500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as broken:
            client.users_info(user="UBOB")
        assert broken.value.response.status_code == 500
    assert client.users_info(user="UBOB")["ok"]
    assert [c.ok for c in fake.calls("users.info")] == [False, False, True]
    assert fake.messages("C1") and len(fake.messages("C1")) == 1  # failed posts change nothing


def test_response_url(fake: FakeSlackAPI) -> None:
    url = fake.response_url_for("approve-1")
    assert url == f"http://127.0.0.1:{fake.port}/response/approve-1"
    resp = WebhookClient(url).send(text="Approved", replace_original=True)
    assert resp.status_code == 200 and resp.body == "ok"
    call = fake.last("response_url")
    assert call.params == {"text": "Approved", "replace_original": True, "name": "approve-1"}
    fake.fail_next("response_url", error="expired_url", status=404)
    assert WebhookClient(url).send(text="late").status_code == 404


def test_wait_for_across_threads(client: WebClient, fake: FakeSlackAPI) -> None:
    since = fake.mark()

    def later() -> None:
        time.sleep(0.2)
        client.chat_postMessage(channel="C1", text="not this")
        client.chat_postMessage(channel="C1", text="this one")

    worker = threading.Thread(target=later)
    worker.start()
    call = fake.wait_for("chat.postMessage", lambda c: c.params.get("text") == "this one", since=since)
    worker.join()
    assert call.params["channel"] == "C1"
    with pytest.raises(AssertionError, match=r"no matching views\.open"):
        fake.wait_for("views.open", timeout=0.2)
    assert fake.wait_for("chat.postMessage", since=call.seq - 1) == call


def test_reset(client: WebClient, fake: FakeSlackAPI) -> None:
    client.auth_test()
    fake.fail_next("auth.test")
    fake.reset()
    assert fake.calls() == []
    assert client.auth_test()["ok"]
    with pytest.raises(AssertionError):
        fake.last("chat.postMessage")


# ------------------------------------------------------------------------------------------------
# payloads and signing
# ------------------------------------------------------------------------------------------------


def test_sign_matches_slack_sdk_verifier() -> None:
    body = sp.global_shortcut("request_access", "UREQ")
    headers = sp.sign(SECRET, body.encode())
    verifier = SignatureVerifier(SECRET)
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sig.startswith("v0=")
    assert verifier.is_valid(body, ts, sig)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid(body.replace("UREQ", "UEVE"), ts, sig)
    stale = sp.sign(SECRET, body, int(time.time()) - 301)
    assert not verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])
    assert not SignatureVerifier("other-secret").is_valid(body, ts, sig)
    assert sp.sign(SECRET, sp.app_home_opened("UREQ"))["Content-Type"] == "application/json"


def test_interactive_payload_shapes() -> None:
    shortcut = sp.parse_body(sp.global_shortcut("request_access", "UREQ"))
    assert shortcut["type"] == "shortcut" and shortcut["user"]["id"] == "UREQ"
    assert shortcut["team"] == {"id": "T0TEST", "domain": "accessbot-test"} and "channel" not in shortcut
    assert shortcut["trigger_id"] != sp.parse_body(sp.global_shortcut("request_access", "UREQ"))["trigger_id"]

    suggestion = sp.parse_body(sp.block_suggestion("device", "device_block", "lap", "UREQ"))
    assert suggestion["type"] == "block_suggestion" and suggestion["value"] == "lap"
    assert suggestion["container"] == {"type": "view", "view_id": suggestion["view"]["id"]}

    state = {
        "reason": {"reason": sp.text_input_state("deploy")},
        "profile": {"profile": sp.select_state("prod", "Production")},
        "who": {"who": sp.multi_users_select_state(["UBOB"])},
    }
    submission = sp.parse_body(sp.view_submission("request_access", "UREQ", state, "meta", "V123"))
    assert submission["type"] == "view_submission"
    assert submission["view"]["id"] == "V123" and submission["view"]["callback_id"] == "request_access"
    assert submission["view"]["private_metadata"] == "meta"
    assert submission["view"]["state"]["values"]["profile"]["profile"]["selected_option"]["value"] == "prod"

    in_view = sp.parse_body(sp.block_actions_in_view("profile", "profile", "UREQ", selected_value="prod"))
    action = in_view["actions"][0]
    assert in_view["container"]["type"] == "view" and action["type"] == "static_select"
    assert action["selected_option"]["value"] == "prod"
    assert in_view["view"]["state"]["values"]["profile"]["profile"]["selected_option"]["value"] == "prod"

    command = sp.parse_body(sp.slash_command("/access", "list", "UREQ", "C1", "http://127.0.0.1:1/response/x"))
    assert command["command"] == "/access" and command["text"] == "list" and command["trigger_id"]

    event = json.loads(sp.app_home_opened("UREQ"))
    assert event["type"] == "event_callback" and event["event"]["type"] == "app_home_opened"
    assert event["event"]["user"] == "UREQ" and event["api_app_id"] == "A0TEST"


def test_bolt_parses_the_bodies_like_slack_sends_them() -> None:
    for body in (
        sp.global_shortcut("cb", "UREQ"),
        sp.view_submission("cb", "UREQ", {}),
        sp.slash_command("/access", "a b&c=d", "UREQ", "C1", "http://127.0.0.1:1/r"),
        sp.app_home_opened("UREQ"),
    ):
        assert bolt_parse_body(body, sp.content_type_of(body)) == sp.parse_body(body)


def test_builders_take_views_and_messages_from_the_fake(client: WebClient, fake: FakeSlackAPI) -> None:
    opened = client.views_open(trigger_id="t", view=MODAL)["view"]
    body = sp.view_submission("request_access", "UREQ", {}, view=fake.view(opened["id"]))
    view = sp.parse_body(body)["view"]
    assert (view["id"], view["hash"], view["private_metadata"]) == (opened["id"], opened["hash"], "m1")

    blocks = [
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": "req-1",
                }
            ],
        }
    ]
    posted = client.chat_postMessage(channel="UBOB", text="Approve?", blocks=blocks)
    message = fake.message(posted["channel"], posted["ts"])
    click = sp.parse_body(
        sp.block_actions_in_message(
            "approve",
            "req-1",
            "UBOB",
            posted["channel"],
            posted["ts"],
            fake.response_url_for("r1"),
            message=message,
        )
    )
    assert click["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": "DUBOB",
        "is_ephemeral": False,
    }
    assert click["channel"]["id"] == "DUBOB" and click["message"]["blocks"] == blocks
    assert click["actions"][0]["block_id"] == "decide" and click["actions"][0]["style"] == "primary"
    assert click["response_url"] == fake.response_url_for("r1")


# ------------------------------------------------------------------------------------------------
# the whole harness with a real (minimal) Bolt app over HTTP
# ------------------------------------------------------------------------------------------------


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log in test output."""


@pytest.fixture
def bolt_url(fake: FakeSlackAPI) -> Iterator[str]:
    """A tiny Bolt app (not accessbot's) served on 127.0.0.1, talking to the fake."""
    bolt = App(client=WebClient(token=TOKEN, base_url=fake.base_url), signing_secret=SECRET)

    @bolt.shortcut("request_access")
    def open_modal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=MODAL)

    @bolt.action("approve")
    def approve(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        context.respond(text=f"approved by {body['user']['id']}", replace_original=True)

    server = make_server("127.0.0.1", 0, SlackRequestHandler(bolt), _ThreadingWSGIServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_signed_requests_drive_a_bolt_app(bolt_url: str, fake: FakeSlackAPI) -> None:
    with sp.SlackEventsClient(bolt_url, SECRET) as events:
        shortcut = sp.global_shortcut("request_access", "UREQ")
        assert events.post(shortcut).status_code == 200
        opened = fake.wait_for("views.open")
        assert opened.params["trigger_id"] == sp.parse_body(shortcut)["trigger_id"]
        assert opened.ok

        click = sp.block_actions_in_message("approve", "r1", "UBOB", "DUBOB", "1.2", fake.response_url_for("r1"))
        assert events.post(click).status_code == 200
        assert fake.wait_for("response_url").params["text"] == "approved by UBOB"

        forged = events.post(shortcut, signature="v0=" + "0" * 64)
        stale = events.post(shortcut, timestamp=int(time.time()) - 600)
        unsigned = events.post(shortcut, signed=False)
        assert [r.status_code for r in (forged, stale, unsigned)] == [401, 401, 401]
    assert len(fake.calls("views.open")) == 1
