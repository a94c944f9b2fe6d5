"""The Slack directory caches answers only, and the WebClient retries what Slack says to retry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.access.errors import DirectoryUnavailable
from app.config.profiles import Profile
from app.slack.client import slack_client
from app.slack.directory import SlackDirectory
from tests.fakes.slack_api import FakeSlackAPI


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        fake.add_user("UBOB", "bob@example.com", "bob", "Bob")
        fake.add_user("UCAROL", "carol@example.com", "carol", "Carol")
        fake.add_group("S1", "sre", ["UBOB", "UCAROL"])
        yield fake


@pytest.fixture
def directory(fake: FakeSlackAPI) -> SlackDirectory:
    return SlackDirectory(slack_client(fake.token, fake.base_url))


def profile(*approvers: str) -> Profile:
    return Profile.model_validate(
        {"id": "prod", "attribute": "custom:prod", "max_duration": "1h", "approvers": list(approvers)}
    )


def test_a_429_within_the_wait_limit_is_retried_by_the_client(fake: FakeSlackAPI, directory: SlackDirectory) -> None:
    fake.fail_next("users.lookupByEmail", status=429, retry_after=1)
    assert directory.approvers_of(profile("bob@example.com")) == {"UBOB"}
    assert [c.status for c in fake.calls("users.lookupByEmail")] == [429, 200]


def test_errors_are_not_remembered_as_nobody(fake: FakeSlackAPI, directory: SlackDirectory) -> None:
    fake.fail_next("users.lookupByEmail", status=429, retry_after=60)  # too long to wait inside a click
    with pytest.raises(DirectoryUnavailable, match="Slack is busy"):
        directory.approvers_of(profile("bob@example.com"))
    assert len(fake.calls("users.lookupByEmail")) == 1
    fake.fail_next("usergroups.list", error="internal_error", status=200)
    with pytest.raises(DirectoryUnavailable):
        directory.group_members("sre")
    assert directory.approvers_of(profile("bob@example.com", "@sre")) == {"UBOB", "UCAROL"}


def test_answers_are_cached_including_no_such_user(fake: FakeSlackAPI, directory: SlackDirectory) -> None:
    assert directory.user_id_for_email("nobody@example.com") is None
    assert directory.user_id_for_email("nobody@example.com") is None
    assert directory.email_of("UNOBODY") is None
    assert directory.email_of("UNOBODY") is None
    assert len(fake.calls("users.lookupByEmail")) == 1 and len(fake.calls("users.info")) == 1


def test_group_handles_match_whatever_their_case(directory: SlackDirectory) -> None:
    assert directory.approvers_of(profile("@SRE")) == {"UBOB", "UCAROL"}
    assert directory.group_members("Sre") == {"UBOB", "UCAROL"}


def test_warm_fills_the_memory_the_options_path_reads(fake: FakeSlackAPI, directory: SlackDirectory) -> None:
    assert directory.known_email("UBOB") is None
    assert directory.warm() >= 2
    before = len(fake.calls())
    assert directory.known_email("UBOB") == "bob@example.com"
    assert directory.email_of("UCAROL") == "carol@example.com"
    assert len(fake.calls()) == before  # both from memory


def test_the_options_path_reads_an_expired_email_from_memory_rather_than_ask_slack(fake: FakeSlackAPI) -> None:
    now = [0.0]
    directory = SlackDirectory(slack_client(fake.token, fake.base_url), ttl=300, clock=lambda: now[0])
    directory.warm()
    now[0] = 3600.0  # an hour later: every entry is past its ttl
    before = len(fake.calls())
    assert directory.known_email("UBOB") == "bob@example.com"
    assert len(fake.calls()) == before
    assert directory.email_of("UBOB") == "bob@example.com"  # the form's own lookup still refreshes it
    assert len(fake.calls("users.info")) == 1


def test_names_never_raise(fake: FakeSlackAPI, directory: SlackDirectory) -> None:
    fake.fail_next("users.info", status=429, retry_after=60)
    assert directory.name_of("UBOB") == "UBOB"
    assert directory.name_of("UBOB") == "Bob"
