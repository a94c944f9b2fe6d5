"""``accessbot doctor``'s on-call lines and the providers built from the settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.bootstrap.oncall import oncall_checks, oncall_schedules
from app.config.model import Config
from app.config.settings import Settings
from app.core.checks import Status
from app.core.errors import ConfigError
from app.oncall.opsgenie import OpsgenieClient
from app.oncall.pagerduty import PagerDutyClient
from tests.fakes.pagerduty import FakePagerDuty
from tests.unit.access_support import make_config

TOKEN = "pd-doctor-token-0123456789"


@pytest.fixture
def fake() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(TOKEN) as server:
        yield server


def settings(**env: str) -> Settings:
    return Settings(**env)  # type: ignore[arg-type]


def pd_config() -> Config:
    return make_config(auto_approve={"pagerduty": {"schedule_ids": ["PSCHED1"]}})


def test_no_auto_approve_no_line() -> None:
    assert oncall_checks(settings(), make_config()) == []


def test_a_missing_token_is_a_warning_naming_the_setting_and_the_profiles() -> None:
    [line] = oncall_checks(settings(), pd_config())
    assert line.status is Status.WARN
    assert "PAGERDUTY_API_TOKEN is not set" in line.detail and "prod" in line.detail


def test_a_working_token_is_ok_and_a_refused_one_fails_without_showing_it(fake: FakePagerDuty) -> None:
    [line] = oncall_checks(settings(PAGERDUTY_API_TOKEN=TOKEN, PAGERDUTY_BASE_URL=fake.url), pd_config())
    assert line.status is Status.OK, line
    assert fake.paths() == ["/users"]
    [line] = oncall_checks(settings(PAGERDUTY_API_TOKEN="wrong-token-xyz", PAGERDUTY_BASE_URL=fake.url), pd_config())
    assert line.status is Status.FAIL and "401" in line.detail and "wrong-token-xyz" not in str(line)


def test_providers_are_built_only_with_their_credentials() -> None:
    none = oncall_schedules(settings())
    assert none.pagerduty is None and none.opsgenie is None
    both = oncall_schedules(
        settings(PAGERDUTY_API_TOKEN="t", OPSGENIE_API_KEY="k", OPSGENIE_BASE_URL="api.eu.opsgenie.com")
    )
    assert isinstance(both.pagerduty, PagerDutyClient) and isinstance(both.opsgenie, OpsgenieClient)
    assert both.opsgenie.http.url == "https://api.eu.opsgenie.com"
    assert both.pagerduty.http.url == "https://api.pagerduty.com"


def test_a_malformed_base_url_is_one_config_error_line() -> None:
    with pytest.raises(ConfigError, match="PAGERDUTY_BASE_URL"):
        oncall_schedules(settings(PAGERDUTY_API_TOKEN="t", PAGERDUTY_BASE_URL="ftp://pd.example"))
    [line] = oncall_checks(settings(PAGERDUTY_API_TOKEN="t", PAGERDUTY_BASE_URL="https://"), pd_config())
    assert line.status is Status.FAIL and "not an http(s) URL" in line.detail
