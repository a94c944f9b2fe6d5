"""``accessbot demo``: the whole flow through the real app, offline; it must be able to fail, and leave nothing."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from app.bootstrap.demo.blocks_text import block_lines, plain
from app.bootstrap.demo.slack_standin import SlackStandIn
from app.cli import cli
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import TailnetUnavailable

STEPS = [
    "==> 1. Rita runs the global shortcut 'Request Tailscale Access'",
    "==> 2. Rita opens the device picker",
    "==> 3. Rita chooses 30 minutes, approver Bob",
    "==> 4. Bob clicks Approve",
    "==> 5. The clock moves past the expiry",
    "demo complete: requested, approved, granted, expired.",
]


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("accessbot-demo-*")}


def run_demo(monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Result:
    """``accessbot demo`` in ``cwd``, with no proxy variables (which the demo refuses)."""
    monkeypatch.chdir(cwd)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner().invoke(cli, ["demo"])


def _index(lines: list[str], start: int, prefix: str) -> int:
    return next(i for i in range(start, len(lines)) if lines[i].strip().startswith(prefix))


def test_demo_plays_the_flow_in_order_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    before_env, before_tmp = dict(os.environ), _leftovers()

    result = run_demo(monkeypatch, tmp_path)

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    at = [_index(lines, 0, STEPS[0])]
    for step in STEPS[1:]:
        at.append(_index(lines, at[-1] + 1, step))
    form, options, submitted, approved, expired = (lines[a:b] for a, b in itertools.pairwise(at))
    assert any("Device: <external_select" in line for line in form)
    assert any("rita-laptop" in line for line in options) and any("db-prod-1" in line for line in options)
    assert any(line.strip() == "new message in DM with Bob Approver:" for line in submitted)
    assert any("[ Approve ] [ Deny ]" in line for line in submitted)
    assert any("new message in #access-requests:" in line for line in approved)
    assert any("is granted until" in line for line in approved)
    granted = [line.strip() for line in approved if line.strip().startswith("custom:prodAccess:")]
    assert len(granted) == 1 and granted[0].startswith("custom:prodAccess: true, expires 20")
    assert any("has ended" in line for line in expired)
    after = expired[_index(expired, 0, "device ") :]
    assert after[1].strip() == "(none)" and not any("custom:prodAccess" in line for line in after)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no database, key or lock file
    assert dict(os.environ) == before_env
    assert _leftovers() == before_tmp  # the temporary directory is gone


def test_a_grant_that_never_lands_fails_the_demo_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise TailnetUnavailable("tailnet down (demo test)")

    monkeypatch.setattr(BuiltinTailnet, "set_attribute", refuse)
    before_tmp = _leftovers()

    result = run_demo(monkeypatch, tmp_path)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: demo failed: 4. the approval: the grant never landed"), last
    assert "==> 5." not in result.output
    assert list(tmp_path.iterdir()) == []
    assert _leftovers() == before_tmp


def test_a_proxy_variable_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "HTTPS_PROXY is set" in result.output and "env -u" in result.output


# -- the stand-in answers as Slack does -------------------------------------------------------------------


@pytest.fixture
def slack() -> SlackStandIn:
    standin = SlackStandIn("xoxb-right")
    standin.add_user("U1", "one@example.com", "one", "One Person")
    standin.add_channel("CIN", "in")
    standin.add_channel("COUT", "out", bot_member=False)
    return standin


def test_standin_refuses_like_slack(slack: SlackStandIn) -> None:
    auth = "Bearer xoxb-right"
    assert slack.answer("auth.test", {}, None) == {"ok": False, "error": "not_authed"}
    assert slack.answer("auth.test", {}, "Bearer xoxb-wrong")["error"] == "invalid_auth"
    assert slack.answer("chat.scheduleMessage", {}, auth)["error"] == "unknown_method"
    assert slack.answer("chat.postMessage", {"channel": "COUT", "text": "x"}, auth)["error"] == "not_in_channel"
    assert slack.answer("chat.postMessage", {"channel": "CNOPE", "text": "x"}, auth)["error"] == "channel_not_found"
    assert slack.answer("chat.postMessage", {"channel": "CIN"}, auth)["error"] == "no_text"
    assert slack.answer("chat.update", {"channel": "CIN", "ts": "1.2", "text": "x"}, auth)["error"] == (
        "message_not_found"
    )
    assert slack.answer("users.lookupByEmail", {"email": "two@example.com"}, auth)["error"] == "users_not_found"
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    trigger = slack.new_trigger()
    assert slack.answer("views.open", {"trigger_id": trigger, "view": view}, auth)["ok"] is True
    assert slack.answer("views.open", {"trigger_id": trigger, "view": view}, auth)["error"] == "exchanged_trigger_id"
    assert slack.answer("views.open", {"trigger_id": "1.2.3", "view": view}, auth)["error"] == "expired_trigger_id"


def test_standin_posts_to_a_user_in_their_dm_and_updates_it(slack: SlackStandIn) -> None:
    auth = "Bearer xoxb-right"
    posted = slack.answer("chat.postMessage", {"channel": "U1", "text": "hello", "blocks": "[]"}, auth)
    assert posted["ok"] and posted["channel"] == "DU1" and posted["message"]["text"] == "hello"
    updated = slack.answer("chat.update", {"channel": "DU1", "ts": posted["ts"], "text": "bye"}, auth)
    assert updated["ok"] and slack.message("DU1", posted["ts"])["text"] == "bye"
    assert slack.answer("conversations.open", {"users": "U1"}, auth)["channel"] == {"id": "DU1"}


def test_blocks_read_as_slack_shows_them() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Access"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "<@U1> wants *prod* until <!date^1|2026-01-01T00:00:00Z> &amp; more"},
            "fields": [{"type": "mrkdwn", "text": "*Device*\nlaptop"}],
        },
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Approve"}}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "in <#C1>"}]},
    ]
    names = {"U1": "One Person", "C1": "#general"}
    lines = list(block_lines(blocks, user_name=names.__getitem__, channel_name=names.__getitem__))
    assert lines == [
        "== Access ==",
        "@One Person wants prod until 2026-01-01T00:00:00Z & more",
        "  Device: laptop",
        "[ Approve ]",
        "  (in #general)",
    ]
    assert plain("<https://example.com|the docs>") == "the docs"
