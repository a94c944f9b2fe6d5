"""The CrowdStrike and Fleet fakes answer like the vendors: raw HTTP against them, no client in between."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.vendor_crowdstrike import (
    CROWDSTRIKE_CLIENT_ID,
    CROWDSTRIKE_SECRET,
    HOSTS,
    ZTA,
    FakeCrowdStrike,
    falcon_host,
)
from tests.fakes.vendor_fleet import FLEET_HOSTS, FLEET_TOKEN, FakeFleet, fleet_host


@pytest.fixture
def falcon() -> Iterator[FakeCrowdStrike]:
    hosts = [falcon_host(i) for i in range(6)]
    with FakeCrowdStrike(hosts, {hosts[0]["device_id"]: 87, hosts[1]["device_id"]: 54}) as fake:
        yield fake


def bearer(fake: FakeCrowdStrike) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": CROWDSTRIKE_CLIENT_ID, "client_secret": CROWDSTRIKE_SECRET}
    answer = httpx.post(f"{fake.url}{fake.token_path}", data=form)
    assert answer.status_code == 201
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def aid(i: int) -> str:
    return str(falcon_host(i)["device_id"])


def test_posted_host_details_answer_as_the_get_form(falcon: FakeCrowdStrike) -> None:
    auth = bearer(falcon)
    ids = [aid(2), "f" * 32, aid(0)]
    by_get = httpx.get(f"{falcon.url}{HOSTS}", params={"ids": ids}, headers=auth)
    by_post = httpx.post(f"{falcon.url}{HOSTS}", json={"ids": ids}, headers=auth)
    assert by_get.status_code == by_post.status_code == 200
    assert [h["device_id"] for h in by_post.json()["resources"]] == [aid(2), aid(0)]
    assert by_post.json()["errors"] == by_get.json()["errors"] == [{"code": 404, "message": f"ID {'f' * 32} not found"}]
    assert by_post.json()["resources"] == by_get.json()["resources"]
    unknown = httpx.post(f"{falcon.url}{HOSTS}", json={"ids": ["e" * 32]}, headers=auth)
    assert unknown.status_code == 404 and unknown.json()["resources"] == []
    assert falcon.api_calls(HOSTS)[-1].method == "POST" and b"e" * 32 in falcon.api_calls(HOSTS)[-1].body


def test_posted_host_details_refuse_what_the_api_refuses(falcon: FakeCrowdStrike) -> None:
    auth = bearer(falcon)
    url = f"{falcon.url}{HOSTS}"
    assert httpx.post(url, json={"ids": [aid(0)] * 5000}, headers=auth).status_code == 200
    too_many = httpx.post(url, json={"ids": [aid(0)] * 5001}, headers=auth)
    assert too_many.status_code == 400 and "at most 5000" in too_many.json()["errors"][0]["message"]
    for body in ({"ids": []}, {}, {"ids": "x"}, {"ids": [1]}, ["x"]):
        assert httpx.post(url, json=body, headers=auth).status_code == 400, body
    assert httpx.post(url, content=b"{not json", headers=auth).status_code == 400
    refused = httpx.post(url, json={"ids": [aid(0)]}, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == 401
    assert httpx.get(url, params={"ids": [aid(0)] * 101}, headers=auth).status_code == 400  # GET: 100 at most
    assert httpx.post(f"{falcon.url}{ZTA}", json={"ids": [aid(0)]}, headers=auth).status_code == 405


def test_set_hosts_reindexes_the_lookups(falcon: FakeCrowdStrike) -> None:
    auth = bearer(falcon)
    falcon.set_hosts([falcon_host(9)], {aid(9): 12})
    hosts = httpx.post(f"{falcon.url}{HOSTS}", json={"ids": [aid(0), aid(9)]}, headers=auth).json()
    assert [h["device_id"] for h in hosts["resources"]] == [aid(9)]
    scores = httpx.get(f"{falcon.url}{ZTA}", params={"ids": [aid(0), aid(9)]}, headers=auth).json()
    assert [z["assessment"]["overall"] for z in scores["resources"]] == [12]


def fleet_page(fake: FakeFleet, **params: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{fake.url}{FLEET_HOSTS}", params=params, headers={"Authorization": f"Bearer {FLEET_TOKEN}"})
    assert answer.status_code == 200
    hosts: list[dict[str, object]] = answer.json()["hosts"]
    return hosts


def test_fleet_pages_follow_the_order_and_team_and_set_agents_replaces_them() -> None:
    hosts = [fleet_host(i, hostname=f"h{9 - i}", team_id=1 if i % 2 else None) for i in range(6)]
    with FakeFleet(hosts) as fake:
        assert [h["id"] for h in fleet_page(fake, page="0", per_page="4")] == [100, 101, 102, 103]
        assert [h["id"] for h in fleet_page(fake, page="1", per_page="4")] == [104, 105]
        assert [h["hostname"] for h in fleet_page(fake, order_key="hostname", per_page="3")] == ["h4", "h5", "h6"]
        assert [h["id"] for h in fleet_page(fake, team_id="1", per_page="10")] == [101, 103, 105]
        fake.set_agents([fleet_host(7, hostname="h0", team_id=1), fleet_host(6, hostname="h1")])
        assert [h["id"] for h in fleet_page(fake, page="1", per_page="4")] == []
        assert [h["id"] for h in fleet_page(fake, page="0", per_page="4")] == [106, 107]
        assert [h["hostname"] for h in fleet_page(fake, order_key="hostname", per_page="3")] == ["h0", "h1"]
        assert [h["id"] for h in fleet_page(fake, team_id="1", per_page="10")] == [107]
