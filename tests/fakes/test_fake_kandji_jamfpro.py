"""The Kandji and Jamf Pro fakes say no the way the vendors do: raw HTTP against them, no client in between."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.vendor_jamfpro import JAMF_CLIENT_ID, JAMF_CLIENT_SECRET, FakeJamfPro, jamf_computer
from tests.fakes.vendor_kandji import KANDJI_DEVICES, KANDJI_TOKEN, FakeKandji, kandji_device


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def kandji(ticks: Ticks) -> Iterator[FakeKandji]:
    with FakeKandji([kandji_device(i) for i in range(5)], rate_limit_per_second=3, clock=ticks) as fake:
        yield fake


@pytest.fixture
def jamf(ticks: Ticks) -> Iterator[FakeJamfPro]:
    with FakeJamfPro([jamf_computer(i) for i in range(5)], token_lifetime=60, versions=("v1", "v3"), clock=ticks) as f:
        yield f


def kandji_get(fake: FakeKandji, token: str = KANDJI_TOKEN, **params: str) -> httpx.Response:
    return httpx.get(f"{fake.url}{KANDJI_DEVICES}", params=params, headers={"Authorization": f"Bearer {token}"})


def test_kandji_pages_by_offset_with_the_hard_limit_and_kong_headers(kandji: FakeKandji) -> None:
    first = kandji_get(kandji, limit="2", offset="0", sort_by="-device_id")
    body = first.json()
    assert (body["cursor"], body["limit"], body["offset"], body["total"]) == (None, 2, 0, 5)
    assert [d["device__name"] for d in body["data"]] == ["host-00004", "host-00003"]
    assert first.headers["X-RateLimit-Limit-Hour"] == "10000" and first.headers["RateLimit-Limit"] == "3"
    assert kandji_get(kandji, limit="1000", offset="4").json()["limit"] == 300  # capped, not refused
    assert kandji_get(kandji, limit="300", offset="5").json()["data"] == []


def test_kandji_429_carries_kongs_message_and_headers(kandji: FakeKandji, ticks: Ticks) -> None:
    for _ in range(3):
        assert kandji_get(kandji).status_code == 200
    refused = kandji_get(kandji)
    assert refused.status_code == 429 and refused.json() == {"message": "API rate limit exceeded"}
    assert refused.headers["Retry-After"] == "1" and refused.headers["RateLimit-Reset"] == "1"
    assert refused.headers["RateLimit-Remaining"] == "0"
    ticks.now += 1.0
    assert kandji_get(kandji).status_code == 200


def test_kandji_refuses_a_wrong_token(kandji: FakeKandji) -> None:
    refused = kandji_get(kandji, token="nope")
    assert refused.status_code == 401 and "detail" in refused.json()


def jamf_token(fake: FakeJamfPro, secret: str = JAMF_CLIENT_SECRET, path: str = "/api/oauth/token") -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": JAMF_CLIENT_ID, "client_secret": secret}
    return httpx.post(f"{fake.url}{path}", data=form)


def jamf_inventory(fake: FakeJamfPro, token: str, version: str = "v3", **params: str) -> httpx.Response:
    query = httpx.QueryParams(params)
    return httpx.get(
        f"{fake.url}/api/{version}/computers-inventory", params=query, headers={"Authorization": f"Bearer {token}"}
    )


def test_jamf_tokens_expire_and_then_get_401(jamf: FakeJamfPro, ticks: Ticks) -> None:
    issued = jamf_token(jamf).json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 60 and issued["scope"] == "api-role:2"
    assert jamf_token(jamf, path="/api/v1/oauth/token").status_code == 200  # the SDK's path works too
    assert jamf_inventory(jamf, issued["access_token"]).status_code == 200
    ticks.now += 60
    expired = jamf_inventory(jamf, issued["access_token"])
    assert expired.status_code == 401 and expired.json() == {"httpStatus": 401, "errors": []}
    assert jamf.expired_refusals == 1


def test_jamf_refuses_wrong_client_credentials(jamf: FakeJamfPro) -> None:
    refused = jamf_token(jamf, secret="wrong")
    assert refused.status_code == 401 and refused.json() == {"error": "invalid_client"}


def test_jamf_serves_only_its_versions_and_the_requested_sections(jamf: FakeJamfPro) -> None:
    token = jamf_token(jamf).json()["access_token"]
    assert jamf_inventory(jamf, token, "v4").status_code == 404
    general_only = jamf_inventory(jamf, token, **{"page": "0", "page-size": "2"}).json()
    assert general_only["totalCount"] == 5 and len(general_only["results"]) == 2
    assert general_only["results"][0]["hardware"] is None and general_only["results"][0]["general"]["name"]
    both = httpx.get(
        f"{jamf.url}/api/v3/computers-inventory?section=GENERAL&section=HARDWARE&page=2&page-size=2",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert [r["id"] for r in both["results"]] == ["5"] and both["results"][0]["hardware"]["serialNumber"]
    assert jamf_inventory(jamf, token, **{"page-size": "2001"}).status_code == 400
    assert jamf_inventory(jamf, token, section="PLUGINZ").status_code == 400


def test_jamf_v4_renames_last_contact_time(ticks: Ticks) -> None:
    with FakeJamfPro([jamf_computer(0)], clock=ticks) as fake:
        token = jamf_token(fake).json()["access_token"]
        general = jamf_inventory(fake, token, "v4").json()["results"][0]["general"]
        assert "lastContactTime" not in general and general["lastContact"] == general["lastCheckIn"]
