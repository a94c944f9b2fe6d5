"""The device picker's options response, treated as data: shape, Slack's limits, empty groups."""

from __future__ import annotations

import json

from app.slack.device_index import DeviceMatches
from app.slack.views.device_options import (
    MAX_OPTIONS,
    OPTION_TEXT_LIMIT,
    OPTION_VALUE_LIMIT,
    device_option_groups,
    device_option_text,
    truncate,
)
from app.tailnet.models import Device


def dev(name: str, *, user: str = "alice@example.com", os: str = "macos", id: str = "1000000000000001") -> Device:
    return Device(id=id, node_id=f"n{id}CNTRL", name=name, hostname=name.split(".", 1)[0], user=user, os=os)


def many(prefix: str, count: int, user: str) -> list[Device]:
    return [dev(f"{prefix}-{i:03d}.tail1234.ts.net", user=user, id=str(10**15 + i)) for i in range(count)]


def all_options(response: dict) -> list[dict]:
    if "options" in response:
        return response["options"]
    return [option for group in response["option_groups"] for option in group["options"]]


def test_groups_shape() -> None:
    laptop = dev("laptop.tail1234.ts.net", id="111")
    server = dev("server.tail1234.ts.net", user="bob@example.com", os="linux", id="222")
    response = device_option_groups(DeviceMatches(mine=[laptop], others=[server]))
    assert response == {
        "option_groups": [
            {
                "label": {"type": "plain_text", "text": "Your devices"},
                "options": [
                    {"text": {"type": "plain_text", "text": "laptop · macos · alice@example.com"}, "value": "111"}
                ],
            },
            {
                "label": {"type": "plain_text", "text": "Other devices"},
                "options": [
                    {"text": {"type": "plain_text", "text": "server · linux · bob@example.com"}, "value": "222"}
                ],
            },
        ]
    }
    assert json.loads(json.dumps(response)) == response


def test_empty_groups_are_left_out() -> None:
    laptop = dev("laptop.tail1234.ts.net")
    only_mine = device_option_groups(DeviceMatches(mine=[laptop]))
    assert [g["label"]["text"] for g in only_mine["option_groups"]] == ["Your devices"]
    only_others = device_option_groups(DeviceMatches(others=[laptop]))
    assert [g["label"]["text"] for g in only_others["option_groups"]] == ["Other devices"]


def test_nothing_matched_gives_empty_options() -> None:
    assert device_option_groups(DeviceMatches()) == {"options": []}


def test_text_leaves_out_empty_parts() -> None:
    assert device_option_text(dev("tv.tail1234.ts.net", os="", user="")) == "tv"
    assert device_option_text(dev("tv.tail1234.ts.net", os="android", user="")) == "tv · android"


def test_long_text_is_cut_to_75_with_an_ellipsis() -> None:
    device = dev("a" * 60 + ".tail1234.ts.net", user="someone.with.a.long.name@subsidiary.example.com")
    text = device_option_groups(DeviceMatches(mine=[device]))["option_groups"][0]["options"][0]["text"]["text"]
    assert len(text) == OPTION_TEXT_LIMIT
    assert text.endswith("…")
    assert text.startswith("a" * 60 + " · macos")


def test_truncate_counts_utf16_units_like_slack() -> None:
    assert truncate("short", 75) == "short"
    assert truncate("x" * 75, 75) == "x" * 75
    emoji = "🖥️" * 40  # each is 3 UTF-16 units
    cut = truncate(emoji, 75)
    assert len(cut.encode("utf-16-le")) // 2 <= 75
    assert cut.endswith("…")


def test_value_is_the_device_id_within_150() -> None:
    normal = dev("laptop.tail1234.ts.net", id="1234567890123456")
    odd = Device(id="9" * 200, node_id="nODD1CNTRL", name="odd.ts.net", hostname="odd")
    hopeless = Device(id="9" * 200, node_id="n" * 200, name="bad.ts.net", hostname="bad")
    options = all_options(device_option_groups(DeviceMatches(others=[normal, odd, hopeless])))
    assert [o["value"] for o in options] == ["1234567890123456", "nODD1CNTRL"]
    assert all(len(o["value"]) <= OPTION_VALUE_LIMIT for o in options)


def test_at_most_100_options_own_devices_first() -> None:
    mine = many("mine", 80, "alice@example.com")
    others = many("other", 80, "bob@example.com")
    response = device_option_groups(DeviceMatches(mine=mine, others=others))
    groups = response["option_groups"]
    assert [len(g["options"]) for g in groups] == [80, 20]
    assert len(all_options(response)) == MAX_OPTIONS


def test_more_than_100_own_devices_leaves_no_other_group() -> None:
    response = device_option_groups(
        DeviceMatches(mine=many("mine", 150, "alice@example.com"), others=many("o", 5, "bob@example.com"))
    )
    assert [g["label"]["text"] for g in response["option_groups"]] == ["Your devices"]
    assert len(all_options(response)) == MAX_OPTIONS
