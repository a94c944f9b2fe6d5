"""Every view and message, built from adversarial data, checked against Slack's limits by the fake's validator.

Long descriptions, 150 profiles and durations, emoji-heavy names, mrkdwn control characters and would-be
mentions, 100+ grants and devices: what Slack would refuse (``invalid_blocks`` / ``invalid_arguments``) fails
here, and no user-provided ``<`` reaches mrkdwn unescaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.access.outbox import ChannelProblem
from app.access.read_model import AccessRequest
from app.config.model import Config
from app.config.profiles import Profile
from app.db.tables.access import RequestStatus
from app.posture.check import DeviceCheck, RuleCheck
from app.posture.model import Condition, ConditionResult, Op, PostureResult
from app.posture.policy import Rule
from app.slack.device_index import DeviceMatches
from app.slack.ids import ActionId, BlockId
from app.slack.views.blockkit import ELLIPSIS, MORE_VALUE, cut, escape, slack_length, user
from app.slack.views.delivery import admin_alert, channel_problem_blocks
from app.slack.views.device_options import device_option_groups
from app.slack.views.home import home_view
from app.slack.views.posture import STATUS_CARD_MAX, connect_modal, status_card, sync_result
from app.slack.views.posture_check import attrs_blocks, check_blocks
from app.slack.views.request_message import Audience, channel_post, notice, request_message
from app.slack.views.request_modal import RequestDraft, deny_modal, notice_modal, read_form, request_modal
from app.tailnet.models import AttributeSet, Device
from app.vendors.base import CredentialField
from app.vendors.registry import vendors
from app.vendors.sync import SyncReport
from tests.fakes.slack_api import blocks_problems, options_response_problems, view_problems
from tests.unit.access_support import access_request

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NASTY = "<@U123> <!channel> <!here> <https://evil.example|click> a & b > c &amp; &lt;x&gt; *bold* `code`"
EMOJI = "👩‍👩‍👧‍👦🇫🇷👍🏽1️⃣🖥️é"  # ZWJ family, flag, skin tone, keycap, variation selector, combining accent
LONG = (NASTY + " " + EMOJI + " ") * 40  # ~4,800 characters
APP_TOKENS = re.compile(r"<@(?:UREQ|UBOB|UAPPROVER\d+)>|<#C(?:0+\d*|0123ABCD)>|<!date\^\d+\^[^|<>]*\|[^<>]*>")
"""The only ``<…>`` the app itself writes: mentions of the users and channels in this data, and date tokens."""


def profile(i: int, *, description: str = LONG, durations: int = 3, channel: str | None = None) -> Profile:
    return Profile.model_validate(
        {
            "id": f"p{i:03d}",
            "description": f"{i} {description}",
            "attribute": "custom:prodAccess",
            "value": "rw.all",
            "max_duration": "1000h",
            "durations": [f"{m + 1}m" for m in range(durations)],
            "approvers": ["bob@example.com", "@sre"],
            "approvals_required": 1 + i % 2,
            "notify_channel": channel,
        }
    )


PROFILES = [profile(i) for i in range(150)]
MANY_DURATIONS = profile(149, durations=150)


CONFIG = Config(profiles=tuple(profile(i, channel=f"C{i:08d}") for i in range(10)))
PROBLEMS = [ChannelProblem(f"C{i:08d}", NASTY, f"p{i:03d}", NOW, NOW, i + 1, None) for i in range(10)]
INTEGRATIONS = [
    {
        "vendor": f"v{i}<>",
        "label": f"{i} {LONG}",
        "state": "error",
        "headline": LONG,
        "devices_synced": i,
        "agents_without_serial": 0,
        "devices_without_identity": 0,
        "duplicate_serials_resolved": 0,
        "last_error": LONG,
        "paused_until": NASTY,
    }
    for i in range(120)
]


def device(i: int) -> Device:
    return Device(
        id=str(10**15 + i),
        node_id=f"n{i}CNTRL",
        name=f"{EMOJI}{NASTY}-{i}.tail.ts.net",
        hostname=f"host{i}",
        user=f"{NASTY}@example.com",
        os=EMOJI * 5,
    )


def request(i: int = 7, **changes: Any) -> AccessRequest:
    adversarial: dict[str, Any] = {
        "profile_id": "p001",
        "attribute": "custom:prod<&>Access",
        "value": NASTY,
        "approvals_required": 2,
        "device_name": LONG,
        "device_owner": LONG,
        "device_os": LONG,
        "reason": LONG,
        "approver_ids": tuple(f"UAPPROVER{n}" for n in range(100)),
        "approvals": ("UBOB",),
    }
    return access_request(NOW, id=i, **{**adversarial, **changes})


STATUSES: dict[RequestStatus, dict[str, Any]] = {
    RequestStatus.PENDING: {},
    RequestStatus.GRANTING: {},
    RequestStatus.GRANTED: {"expires_at": NOW + timedelta(hours=1)},
    RequestStatus.FAILED: {"last_error": LONG},
    RequestStatus.DENIED: {"decided_by": "UBOB", "deny_reason": LONG},
    RequestStatus.EXPIRED: {},
    RequestStatus.REVOKED: {"ended_by": "UBOB", "ended_at": NOW},
    RequestStatus.ENDED: {"ended_at": NOW, "ended_note": LONG},
    RequestStatus.SCHEDULED: {"starts_at": NOW + timedelta(days=30), "decided_by": "UBOB"},
}
SCHEDULED = ("scheduled", "starts_soon", "start_missed")
"""The notices of scheduled access (``app.access.scheduling``)."""
APPROVERS = [(f"UAPPROVER{n}", f"{n} {LONG}") for n in range(150)]


def label(profile_id: str) -> str:
    return f"{profile_id} {LONG}"


# ------------------------------------------------------------------------------------------------
# every builder, with adversarial data
# ------------------------------------------------------------------------------------------------


def messages() -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(name, fallback text, blocks) of every message the app posts."""
    for status, changes in STATUSES.items():
        req = request(status=status, **changes)
        for audience in Audience:
            text, blocks = request_message(req, audience=audience, profile_label=LONG)
            yield f"request_message:{status}:{audience}", text, blocks
        for kind in ("granted", "failed", "denied", "revoked", "request_expired", "ended", "reminder", *SCHEDULED):
            if kind in ("granted", "reminder") and req.expires_at is None:
                continue
            if kind in SCHEDULED and req.starts_at is None:
                continue
            told = notice(req, kind, LONG, {"by": "UBOB"})
            if told is not None:
                yield f"notice:{status}:{kind}", *told
    granted = request(status=RequestStatus.GRANTED, expires_at=NOW + timedelta(hours=1))
    yield "channel_post", *channel_post(granted, LONG)
    yield "status_card", "status", status_card(INTEGRATIONS)
    yield (
        "status_card+channel_problems",
        "status",
        [*status_card(INTEGRATIONS), *channel_problem_blocks(PROBLEMS, CONFIG)],
    )
    for result in ("ok", "skipped", "error"):
        report = SyncReport(vendor="huntress", label=LONG, result=result, started_at="now", error=LONG)
        yield f"sync_result:{result}", *sync_result(report)
    yield "check_blocks", *check_blocks(device(1), device_check(120))
    yield "check_blocks:empty", *check_blocks(device(1), DeviceCheck(postures=(), rules=()))
    attributes = AttributeSet(
        attributes={f"custom:{NASTY}{i}": f"{LONG}" if i % 2 else i for i in range(120)},
        expiries={f"custom:{NASTY}{i}": NOW + timedelta(minutes=i) for i in range(120)},
    )
    yield "attrs_blocks", *attrs_blocks(device(1), attributes, NOW)
    yield "attrs_blocks:empty", *attrs_blocks(device(1), AttributeSet({}, {}), NOW)
    for error in ("not_in_channel", "channel_not_found", "is_archived", "restricted_action", "missing_scope", NASTY):
        for channel in ("C0123ABCD", f"#{NASTY}"):
            yield f"admin_alert:{error}:{channel[:4]}", *admin_alert(channel, error, LONG)


def device_check(count: int) -> DeviceCheck:
    condition = Condition(text=f"custom:x == '{NASTY}'", key="custom:x", op=Op.EQ, operand=NASTY)
    postures = tuple(
        PostureResult(
            name=f"posture:{i}{NASTY}",
            passed=i % 2 == 0,
            conditions=tuple(ConditionResult(condition, i % 3 == 0, NASTY, True, LONG) for _ in range(30)),
            errors=(LONG,),
        )
        for i in range(count)
    )
    rules = tuple(
        RuleCheck(
            rule=Rule(kind="grant", index=i, line=i, column=1, src=(NASTY,), dst=(f"tag:{NASTY}",)),
            met=i % 2 == 0,
            via="srcPosture",
            required=(f"posture:{NASTY}",),
        )
        for i in range(count)
    )
    return DeviceCheck(postures=postures, rules=rules)


def views() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, view) of every modal and App Home the app opens or publishes."""
    last = PROFILES[-1]
    draft = RequestDraft(
        profile_id=last.id,
        device=device(3),
        duration=timedelta(minutes=150),
        approver_ids=("UAPPROVER149", "UAPPROVER0"),
        reason=LONG,
        extends_request_id=7,
    )
    yield "request_modal:none", request_modal(profiles=PROFILES, selected=None, approvers=[])
    yield "request_modal:empty", request_modal(profiles=[], selected=None, approvers=[])
    for chosen in (PROFILES[0], PROFILES[1], last, MANY_DURATIONS):
        yield (
            f"request_modal:{chosen.id}:{len(chosen.durations)}",
            request_modal(profiles=PROFILES, selected=chosen, approvers=APPROVERS, draft=draft),
        )
    yield "request_modal:no approvers", request_modal(profiles=PROFILES, selected=last, approvers=[])
    yield "deny_modal", deny_modal(7, f"Deny <@UREQ>'s request for *{escape(LONG)}*?")  # the caller escapes
    yield "notice_modal", notice_modal(LONG, escape(LONG))
    for spec in vendors().values():
        odd = replace(
            spec,
            label=LONG,
            fields=(*spec.fields, CredentialField(name="x" * 200, label=LONG, help=LONG)),
        )
        yield f"connect_modal:{spec.id}", connect_modal(odd, None)
    many = [request(i, status=RequestStatus.GRANTED, expires_at=NOW + timedelta(minutes=30)) for i in range(150)]
    pending = [request(i) for i in range(150)]
    notices = channel_problem_blocks(PROBLEMS, CONFIG)
    yield (
        "home:many",
        home_view(active=many, open_requests=pending, awaiting=pending, label=label, now=NOW, notices=notices),
    )
    yield "home:empty", home_view(active=[], open_requests=[], awaiting=[], label=label, now=NOW)


MESSAGES = list(messages())
VIEWS = list(views())


@pytest.mark.parametrize(("name", "text", "blocks"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_every_message_is_within_slacks_limits(name: str, text: str, blocks: list[dict[str, Any]]) -> None:
    assert blocks_problems(blocks, 50) == []
    assert_escaped(text, *mrkdwn_texts(blocks))


@pytest.mark.parametrize(("name", "view"), VIEWS, ids=[v[0] for v in VIEWS])
def test_every_view_is_within_slacks_limits(name: str, view: dict[str, Any]) -> None:
    assert view_problems(view) == []
    assert_escaped(*mrkdwn_texts(view))


def test_device_options_with_emoji_and_markup_are_within_limits() -> None:
    matches = DeviceMatches(mine=[device(i) for i in range(150)], others=[device(i) for i in range(150, 300)])
    answer = device_option_groups(matches)
    assert options_response_problems(answer) == []
    assert sum(len(g["options"]) for g in answer["option_groups"]) == 100


# ------------------------------------------------------------------------------------------------
# what was cut says so, and selections stay selectable
# ------------------------------------------------------------------------------------------------


def element(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]


def test_150_profiles_keep_the_selected_one_and_say_how_many_more() -> None:
    view = request_modal(profiles=PROFILES, selected=PROFILES[-1], approvers=APPROVERS)
    select = element(view, BlockId.PROFILE)
    assert len(select["options"]) == 100
    assert select["initial_option"]["value"] == "p149" and select["initial_option"] in select["options"]
    assert select["options"][-1]["value"] == MORE_VALUE
    assert select["options"][-1]["text"]["text"] == f"{ELLIPSIS}and 51 more"


def test_150_durations_and_approvers_keep_the_draft_choices() -> None:
    draft = RequestDraft(duration=timedelta(minutes=150), approver_ids=("UAPPROVER149",))
    view = request_modal(profiles=PROFILES, selected=MANY_DURATIONS, approvers=APPROVERS, draft=draft)
    duration = element(view, BlockId.DURATION)
    assert len(duration["options"]) == 100 and duration["initial_option"]["value"] == "9000"
    approver = element(view, BlockId.APPROVER)  # p149 needs 2 approvals: a multi select
    assert approver["type"] == "multi_static_select" and len(approver["options"]) == 100
    assert [o["value"] for o in approver["initial_options"]] == ["UAPPROVER149"]


def test_the_more_option_reads_as_nothing_chosen() -> None:
    picked = {"selected_option": {"value": MORE_VALUE}}
    values = {
        BlockId.PROFILE: {ActionId.PROFILE_SELECT: picked},
        BlockId.DEVICE: {ActionId.DEVICE_SELECT: picked},
        BlockId.DURATION: {ActionId.DURATION_SELECT: picked},
        BlockId.APPROVER: {ActionId.APPROVER_SELECT: {"selected_options": [{"value": MORE_VALUE}, {"value": "UB"}]}},
    }
    form = read_form(values)
    assert (form.profile_id, form.device_id, form.duration, form.approver_ids) == (None, None, None, ["UB"])


def test_home_with_150_of_each_says_how_many_more() -> None:
    many = [request(i, status=RequestStatus.GRANTED, expires_at=NOW + timedelta(minutes=30)) for i in range(150)]
    pending = [request(i) for i in range(150)]
    view = home_view(active=many, open_requests=pending, awaiting=pending, label=label, now=NOW)
    text = json.dumps(view, ensure_ascii=False)
    assert len(view["blocks"]) <= 100
    for phrase in ("and 135 more active grants", "and 135 more open requests", "and 135 more requests waiting"):
        assert phrase in text


def test_posture_messages_stay_under_50_blocks_and_say_how_many_more() -> None:
    _, checked = check_blocks(device(1), device_check(120))
    assert len(checked) <= 50 and "more postures" in json.dumps(checked)
    statuses = [{**status, "vendor": str(i)} for i, status in enumerate([STATUS] * 120)]
    card = status_card(statuses)
    assert len(card) <= STATUS_CARD_MAX <= 50 - 7 and "more integrations" in json.dumps(card)  # room for delivery
    attributes = AttributeSet(attributes={f"custom:a{i}": LONG for i in range(400)}, expiries={})
    _, attrs = attrs_blocks(device(1), attributes, NOW)
    assert len(attrs) <= 50 and "more attributes" in json.dumps(attrs)


STATUS = {
    "vendor": "huntress",
    "label": "Huntress",
    "state": "ok",
    "headline": "Last sync 1m ago",
    "devices_synced": 1,
    "agents_without_serial": 0,
    "devices_without_identity": 0,
    "duplicate_serials_resolved": 0,
    "last_error": None,
    "paused_until": None,
}


def test_a_3000_character_description_still_shows_the_facts_an_approver_needs() -> None:
    _, blocks = request_message(request(), audience=Audience.APPROVER, profile_label="x" * 3000)
    fields = blocks[1]["fields"]
    assert all(slack_length(f["text"]) <= 2000 for f in fields)
    assert [f["text"].split("\n", 1)[0] for f in fields] == [
        "*Requester*",
        "*Profile*",
        "*Device*",
        "*Attribute*",
        "*Duration*",
        "*Reason*",
    ]
    assert "Expires unreviewed <!date^" in blocks[2]["text"]["text"]  # the status line keeps its date token


# ------------------------------------------------------------------------------------------------
# escaping
# ------------------------------------------------------------------------------------------------


def mrkdwn_texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            yield node["text"]
        for value in node.values():
            yield from mrkdwn_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from mrkdwn_texts(value)


def assert_escaped(*texts: str) -> None:
    """No ``<`` or ``>`` but the app's own mentions and dates; every ``&`` starts an entity."""
    for text in texts:
        bare = APP_TOKENS.sub("", text)
        assert "<" not in bare and ">" not in bare, text[:200]
        assert not re.search(r"&(?!amp;|lt;|gt;)", bare), text[:200]
        assert "<@U123>" not in text and "<!channel>" not in text and "<!here>" not in text


def test_user_mentions_only_form_from_slack_ids() -> None:
    assert user("U0123ABC") == "<@U0123ABC>"
    assert user("<!channel>") == "&lt;!channel&gt;"
    assert user("U1> <!here") == "U1&gt; &lt;!here"


@given(st.text())
def test_escape_leaves_no_control_characters_and_loses_nothing(text: str) -> None:
    escaped = escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert not re.search(r"&(?!amp;|lt;|gt;)", escaped)
    assert re.sub(r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], escaped) == text


# ------------------------------------------------------------------------------------------------
# cut
# ------------------------------------------------------------------------------------------------

GRAPHEMES = ["a", " ", "é", "e\u0301", "👍🏽", "🇫🇷", "1️⃣", "🖥️", "👩‍👩‍👧‍👦", "😀", "中", "\n"]
TOKENS = ["<@U123ABC>", "<!channel>", "<!date^1700000000^{date_short}|2023-11-14>", "<https://x.example/a|a link>"]
ATOMS = re.compile(r"&(?:amp|lt|gt);|<[^<>]*>")
JOINS_PREVIOUS = re.compile("[\u0300-\u036f\u20e3\ufe0f\u200d\U0001f3fb-\U0001f3ff]")

pieces = st.one_of(
    st.sampled_from(GRAPHEMES),
    st.sampled_from(TOKENS),
    st.text(alphabet=st.sampled_from(list("ab <>&;#x|!@^*`")), max_size=6).map(escape),
)


@given(st.lists(pieces, max_size=40), st.integers(min_value=1, max_value=120))
def test_cut_never_splits_an_entity_a_token_or_an_emoji(parts: list[str], limit: int) -> None:
    text = "".join(parts)
    out = cut(text, limit)
    assert slack_length(out) <= limit
    if out == text:
        return
    assert out.endswith(ELLIPSIS)
    kept = out[: -len(ELLIPSIS)]
    assert text.startswith(kept)
    left = ATOMS.sub("", kept)
    assert "<" not in left and ">" not in left and "&" not in left  # no half entity, no half token
    assert not kept.endswith("\u200d") and not JOINS_PREVIOUS.match(text[len(kept) : len(kept) + 1])


@given(st.lists(st.sampled_from(GRAPHEMES), max_size=60), st.integers(min_value=1, max_value=80))
def test_plain_cut_keeps_whole_graphemes(parts: list[str], limit: int) -> None:
    text = "".join(parts)
    out = cut(text, limit, markup=False)
    assert slack_length(out) <= limit
    if out != text:
        kept = out[: -len(ELLIPSIS)]
        prefixes = {"".join(parts[:n]) for n in range(len(parts) + 1)}
        assert kept in prefixes or any(p.rstrip() == kept for p in prefixes)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("fish &amp; chips", 8, "fish…"),
        ("fish &amp; chips", 11, "fish &amp;…"),
        ("ask <@U123ABC> now", 10, "ask…"),
        ("ask <@U123ABC> now", 15, "ask <@U123ABC>…"),
        ("until <!date^1^{time}|2023-11-14T00:00:00Z> ok", 30, "until…"),
        ("👩‍👩‍👧‍👦👩‍👩‍👧‍👦", 12, "👩‍👩‍👧‍👦…"),
        ("short", 5, "short"),
    ],
)
def test_cut_examples(text: str, limit: int, expected: str) -> None:
    assert cut(text, limit) == expected
