"""The fakes keep Slack's deadlines: trigger ids expire after 3 s, and an answer after the ack deadline is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_payloads import LateAck, SlackEventsClient, global_shortcut, new_trigger_id
from tests.serving import serving

MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}


@pytest.fixture
def client() -> Iterator[WebClient]:
    with FakeSlackAPI() as fake:
        yield WebClient(token=fake.token, base_url=fake.base_url)


def test_a_trigger_older_than_three_seconds_is_refused(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id=new_trigger_id(issued_at=time.time() - 3.5), view=MODAL)
    assert refused.value.response["error"] == "expired_trigger_id"
    assert client.views_open(trigger_id=new_trigger_id(), view=MODAL)["ok"]


def test_an_answer_after_the_deadline_is_a_late_ack() -> None:
    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        time.sleep(0.6 if environ["PATH_INFO"] == "/slow/slack/events" else 0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    with serving(slow) as url:
        fast = SlackEventsClient(url, "secret", ack_deadline=0.3)
        assert fast.post(global_shortcut("cb", "U1")).status_code == 200
        late = SlackEventsClient(url + "/slow", "secret", ack_deadline=0.3)
        with pytest.raises(LateAck, match="shortcut"):
            late.post(global_shortcut("cb", "U1"))
        assert [kind for kind, _ in late.late] == ["shortcut"]
