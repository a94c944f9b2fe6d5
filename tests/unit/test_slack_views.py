"""Block Kit views are pure functions: test them as data (limits, ids, what each audience sees)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.access.read_model import AccessRequest
from app.config.profiles import Profile
from app.db.tables.access import RequestStatus
from app.slack.ids import ActionId, BlockId, CallbackId
from app.slack.views.home import home_view
from app.slack.views.request_message import Audience, notice, request_message
from app.slack.views.request_modal import (
    RequestDraft,
    decode_metadata,
    deny_modal,
    encode_metadata,
    read_form,
    request_modal,
)
from app.tailnet.models import Device
from tests.unit.access_support import access_request

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PROFILE = Profile.model_validate(
    {
        "id": "prod",
        "description": "Production",
        "attribute": "custom:prodAccess",
        "max_duration": "4h",
        "durations": ["30m", "1h", "4h", "8h"],
        "approvers": ["bob@example.com"],
    }
)
PAIR = Profile.model_validate(
    {
        "id": "pair",
        "attribute": "custom:pair",
        "value": "rw",
        "max_duration": "1h",
        "approvers": ["@sre"],
        "approvals_required": 2,
    }
)
DEVICE = Device(id="123", node_id="nABCCNTRL", name="laptop.tail.ts.net", hostname="laptop", user="a@x.io", os="macos")


def request(**changes: Any) -> AccessRequest:
    return access_request(NOW, reason="fix <prod> & more", **changes)


def walk(obj: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        found.append(obj)
        for value in obj.values():
            found.extend(walk(value))
    elif isinstance(obj, list):
        for value in obj:
            found.extend(walk(value))
    return found


def action_ids(blocks: Any) -> list[str]:
    return [d["action_id"] for d in walk(blocks) if "action_id" in d]


def check_limits(view: dict[str, Any]) -> None:
    assert len(view["blocks"]) <= 100
    if view.get("type") == "modal":
        assert len(view["title"]["text"]) <= 24
        assert len(view.get("private_metadata", "")) <= 3000
    for d in walk(view):
        if "options" in d and isinstance(d["options"], list):
            assert len(d["options"]) <= 100
            for opt in d["options"]:
                assert len(opt["text"]["text"]) <= 75 and len(opt["value"]) <= 150
        if d.get("type") == "button":
            assert len(d["value"]) <= 2000


def test_modal_without_profile_offers_only_the_profile_select() -> None:
    view = request_modal(profiles=[PROFILE, PAIR], selected=None, approvers=[])
    check_limits(view)
    assert view["callback_id"] == CallbackId.REQUEST_MODAL
    assert [b.get("block_id") for b in view["blocks"] if b["type"] == "input"] == [BlockId.PROFILE]
    assert view["blocks"][0]["dispatch_action"] is True


def test_modal_for_a_profile() -> None:
    view = request_modal(profiles=[PROFILE], selected=PROFILE, approvers=[("UBOB", "Bob")])
    check_limits(view)
    inputs = [b["block_id"] for b in view["blocks"] if b["type"] == "input"]
    assert inputs == [
        BlockId.PROFILE,
        BlockId.DEVICE,
        BlockId.DURATION,
        BlockId.STARTS_AT,
        BlockId.APPROVER,
        BlockId.REASON,
    ]
    duration = next(b for b in view["blocks"] if b.get("block_id") == BlockId.DURATION)["element"]
    assert [o["text"]["text"] for o in duration["options"]] == ["30m", "1h", "4h"]  # 8h is over the max
    device = next(b for b in view["blocks"] if b.get("block_id") == BlockId.DEVICE)["element"]
    assert device["type"] == "external_select" and device["action_id"] == ActionId.DEVICE_SELECT
    reason = next(b for b in view["blocks"] if b.get("block_id") == BlockId.REASON)["element"]
    assert reason["max_length"] == 200


def test_modal_with_two_approvals_uses_a_multi_select_and_keeps_the_draft() -> None:
    draft = RequestDraft(
        profile_id="pair",
        device=DEVICE,
        duration=timedelta(hours=1),
        approver_ids=("UC",),
        reason="again",
        extends_request_id=7,
    )
    view = request_modal(
        profiles=[PROFILE, PAIR], selected=PAIR, approvers=[("UB", "Bob"), ("UC", "Carol")], draft=draft
    )
    approver = next(b for b in view["blocks"] if b.get("block_id") == BlockId.APPROVER)["element"]
    assert approver["type"] == "multi_static_select"
    assert [o["value"] for o in approver["initial_options"]] == ["UC"]
    device = next(b for b in view["blocks"] if b.get("block_id") == BlockId.DEVICE)["element"]
    assert device["initial_option"]["value"] == "123"
    assert decode_metadata(view["private_metadata"]) == 7


def test_modal_without_resolvable_approvers_says_so() -> None:
    view = request_modal(profiles=[PROFILE], selected=PROFILE, approvers=[])
    approver = next(b for b in view["blocks"] if b.get("block_id") == BlockId.APPROVER)
    assert approver["type"] == "section" and "could be found" in approver["text"]["text"]


def test_read_form_single_and_multi() -> None:
    values = {
        "profile": {"profile_select": {"type": "static_select", "selected_option": {"value": "prod"}}},
        "device": {"device_select": {"type": "external_select", "selected_option": {"value": "123"}}},
        "duration": {"duration_select": {"type": "static_select", "selected_option": {"value": "3600"}}},
        "approver": {"approver_select": {"type": "static_select", "selected_option": {"value": "UBOB"}}},
        "reason": {"reason_input": {"type": "plain_text_input", "value": "hotfix"}},
    }
    form = read_form(values)
    assert (form.profile_id, form.device_id, form.duration, form.approver_ids, form.reason) == (
        "prod",
        "123",
        timedelta(hours=1),
        ["UBOB"],
        "hotfix",
    )
    values["approver"] = {
        "approver_select": {"type": "multi_static_select", "selected_options": [{"value": "UA"}, {"value": "UB"}]}
    }
    values["duration"] = {"duration_select": {"type": "static_select", "selected_option": {"value": "-5"}}}
    form = read_form(values)
    assert form.approver_ids == ["UA", "UB"] and form.duration is None
    assert read_form({}).profile_id is None


@pytest.mark.parametrize("raw", [None, "", "not json", "[]", '{"extends": "7"}'])
def test_metadata_is_robust(raw: str | None) -> None:
    assert decode_metadata(raw) is None
    assert decode_metadata(encode_metadata(3)) == 3


@pytest.mark.parametrize(
    ("status", "changes", "approver_actions", "requester_actions", "phrase"),
    [
        (RequestStatus.PENDING, {}, [ActionId.APPROVE, ActionId.DENY], [], "Waiting for <@UBOB>"),
        (
            RequestStatus.GRANTED,
            {"approvals": ("UBOB",), "expires_at": NOW + timedelta(hours=1)},
            [ActionId.REVOKE],
            [ActionId.EXTEND, ActionId.REVOKE],
            "Access granted until <!date^",
        ),
        (
            RequestStatus.FAILED,
            {"approvals": ("UBOB",), "last_error": "API down"},
            [ActionId.RETRY],
            [],
            "writing the attribute failed: API down",
        ),
        (RequestStatus.DENIED, {"decided_by": "UBOB", "deny_reason": "freeze"}, [], [], "Denied by <@UBOB>: freeze"),
        (RequestStatus.EXPIRED, {}, [], [], "expired"),
        (RequestStatus.REVOKED, {"ended_by": "UADMIN", "ended_at": NOW}, [], [], "revoked by <@UADMIN>"),
        (RequestStatus.ENDED, {"ended_at": NOW}, [], [], "Access ended"),
    ],
)
def test_request_message_per_status_and_audience(
    status: RequestStatus,
    changes: dict[str, Any],
    approver_actions: list[str],
    requester_actions: list[str],
    phrase: str,
) -> None:
    req = request(status=status, **changes)
    _, approver_blocks = request_message(req, audience=Audience.APPROVER, profile_label="Production")
    _, requester_blocks = request_message(req, audience=Audience.REQUESTER, profile_label="Production")
    assert action_ids(approver_blocks) == approver_actions
    assert action_ids(requester_blocks) == requester_actions
    assert phrase in json.dumps(approver_blocks)
    for blocks in (approver_blocks, requester_blocks):
        for d in walk(blocks):
            if d.get("type") == "button":
                assert d["value"] == "7"  # a pointer only; everything else is re-read from the database


def test_request_message_escapes_user_text() -> None:
    _, blocks = request_message(request(), audience=Audience.APPROVER, profile_label="Prod")
    text = json.dumps(blocks)
    assert "fix &lt;prod&gt; &amp; more" in text and "<prod>" not in text


def test_notices() -> None:
    granted = request(status=RequestStatus.GRANTED, expires_at=NOW + timedelta(hours=1))
    text, _ = notice(granted, "granted", "Production")  # type: ignore[misc]
    assert "granted until 2026-11-21T13:00:00Z" in text and "<!date" not in text
    assert notice(request(status=RequestStatus.REVOKED), "revoked", "P", {"by": "UREQ"}) is None
    assert notice(request(status=RequestStatus.ENDED, ended_note="extended by request 9"), "ended", "P") is None
    reminder = notice(granted, "reminder", "Production")
    assert reminder is not None and action_ids(reminder[1]) == [ActionId.EXTEND]


def test_deny_modal_and_home() -> None:
    modal = deny_modal(7, "Deny?")
    check_limits(modal)
    assert json.loads(modal["private_metadata"]) == {"request_id": 7}
    grants = [request(id=i, status=RequestStatus.GRANTED, expires_at=NOW + timedelta(minutes=30)) for i in range(40)]
    view = home_view(
        active=grants, open_requests=[request()], awaiting=[request(id=8)], label=lambda p: p.upper(), now=NOW
    )
    check_limits(view)
    assert "30m left" in json.dumps(view)
    assert ActionId.APPROVE in action_ids(view["blocks"])
