"""FleetClient against respx: page/per_page paging, policy tags → fleetPolicy:<name>, MACs, retries, errors."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.core.http import RetryPolicy
from app.vendors._fields import reported_mac
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.fleet import (
    SPEC,
    FleetClient,
    agent_from_fleet,
    build,
    normalize_base_url,
    policy_key,
    tagged_names,
)
from tests.fakes.sim_time import SimSleep

BASE = "https://fleet.example.com"
URL = f"{BASE}/api/v1/fleet/hosts"
TOKEN = "fleet-unit-token-abcdef"


def policy(name: str, description: str, response: str, pid: int = 7) -> dict[str, Any]:
    return {
        "id": pid,
        "name": name,
        "description": description,
        "platform": "",
        "critical": False,
        "response": response,
    }


def raw_host(i: int, **overrides: Any) -> dict[str, Any]:
    host: dict[str, Any] = {
        "id": 100 + i,
        "hostname": f"host-{i}.local",
        "display_name": f"host-{i}",
        "hardware_serial": f"SN{i:04d}",
        "primary_mac": "a4:83:e7:11:22:33",
        "platform": "darwin",
        "os_version": "macOS 15.6.1",
        "seen_time": "2026-11-30T09:01:58Z",
        "status": "online",
        "team_id": 2,
        "issues": {"failing_policies_count": 0},
        "policies": [
            policy("FileVault on", "Tailscale: fleetPolicy:diskEncrypted", "pass"),
            policy("Screen lock", "", "", 9),
        ],
    }
    host.update(overrides)
    return host


@pytest.fixture
def sleep() -> SimSleep:
    return SimSleep()


@pytest.fixture
def make(sleep: SimSleep) -> Iterator[Callable[..., FleetClient]]:
    clients: list[FleetClient] = []

    def factory(**kwargs: Any) -> FleetClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(3))
        client = FleetClient(kwargs.pop("url", BASE), kwargs.pop("api_token", TOKEN), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def paged(mock: respx.MockRouter, hosts: list[dict[str, Any]], seen: list[httpx.Request]) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        n, size = int(request.url.params["page"]), int(request.url.params["per_page"])
        return httpx.Response(200, json={"hosts": hosts[n * size : (n + 1) * size]})

    return mock.get(URL).mock(side_effect=answer)


def test_pages_are_requested_until_a_short_one_with_policies_and_id_order(
    mock: respx.MockRouter, make: Callable[..., FleetClient]
) -> None:
    seen: list[httpx.Request] = []
    paged(mock, [raw_host(i) for i in range(5)], seen)
    progress: list[tuple[int, int | None]] = []
    agents = make(page_size=2, team_id="4").fetch_agents(progress=lambda n, total: progress.append((n, total)))
    assert [a.id for a in agents] == ["100", "101", "102", "103", "104"]
    assert progress == [(2, None), (4, None), (5, None)]
    assert [r.url.params["page"] for r in seen] == ["0", "1", "2"]
    for request in seen:
        assert request.url.params["per_page"] == "2"
        assert request.url.params["order_key"] == "id"
        assert request.url.params["populate_policies"] == "true"
        assert request.url.params["team_id"] == "4"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_an_exact_multiple_ends_on_an_empty_page(mock: respx.MockRouter, make: Callable[..., FleetClient]) -> None:
    seen: list[httpx.Request] = []
    paged(mock, [raw_host(i) for i in range(4)], seen)
    assert len(make(page_size=2).fetch_agents()) == 4
    assert [r.url.params["page"] for r in seen] == ["0", "1", "2"]


def test_the_reference_sample_maps_as_tailscale_names_it() -> None:
    ana = agent_from_fleet(raw_host(1, id=101, display_name="ana-mbp", hardware_serial="C02ZK1ABMD6T"))
    assert (ana.vendor, ana.id, ana.hostname, ana.serial) == ("fleet", "101", "ana-mbp", "C02ZK1ABMD6T")
    assert dict(ana.attributes) == {"fleet:present": True, "fleetPolicy:diskEncrypted": True}
    assert ana.mac_addresses == ("a483e7112233",)
    assert ana.last_seen == datetime(2026, 11, 30, 9, 1, 58, tzinfo=UTC)
    assert ana.active is True

    build07 = agent_from_fleet(
        raw_host(
            17,
            id=117,
            hardware_serial="",
            primary_mac="02:42:AC:1B:00:06",
            policies=[policy("LUKS on", "Tailscale: fleetPolicy:diskEncrypted", "fail", 8)],
        )
    )
    assert build07.serial is None  # counted as an agent without serial, still matchable by MAC
    assert dict(build07.attributes) == {"fleet:present": True, "fleetPolicy:diskEncrypted": False}
    assert build07.mac_addresses == ("0242ac1b0006",)


def test_a_policy_not_run_yet_leaves_its_key_unset_and_untagged_policies_write_nothing() -> None:
    agent = agent_from_fleet(
        raw_host(
            1,
            policies=[
                policy("FileVault on", "Tailscale: fleetPolicy:diskEncrypted", ""),
                policy("Gatekeeper", "Checks if gatekeeper is enabled", "pass", 2),
                policy("Firewall", "Turns on the firewall. Tailscale: fleetPolicy:firewallOn.", "pass", 3),
            ],
        )
    )
    assert dict(agent.attributes) == {"fleet:present": True, "fleetPolicy:firewallOn": True}
    assert dict(agent_from_fleet(raw_host(1, policies=None)).attributes) == {"fleet:present": True}
    assert dict(agent_from_fleet(raw_host(1, policies=[])).attributes) == {"fleet:present": True}


def test_several_policies_with_one_name_pass_only_if_none_fails() -> None:
    tag = "Tailscale: fleetPolicy:diskEncrypted"
    both = [policy("a", tag, "pass", 1), policy("b", tag, "fail", 2)]
    assert agent_from_fleet(raw_host(1, policies=both)).attributes["fleetPolicy:diskEncrypted"] is False
    reversed_ = [policy("b", tag, "fail", 2), policy("a", tag, "pass", 1)]
    assert agent_from_fleet(raw_host(1, policies=reversed_)).attributes["fleetPolicy:diskEncrypted"] is False
    passing = [policy("a", tag, "pass", 1), policy("b", tag, "", 2)]
    assert agent_from_fleet(raw_host(1, policies=passing)).attributes["fleetPolicy:diskEncrypted"] is True


def test_names_that_cannot_be_keys_are_skipped_and_reported() -> None:
    skipped: set[str] = set()
    agent = agent_from_fleet(
        raw_host(
            1,
            policies=[
                policy("x", "Tailscale: fleetPolicy:disk-encrypted", "pass", 1),
                policy("y", "Tailscale: fleetPolicy:" + "n" * 40, "pass", 2),
                policy("z", "Tailscale: fleetPolicy:a:b", "pass", 3),
            ],
        ),
        skipped=skipped,
    )
    assert dict(agent.attributes) == {"fleet:present": True}
    assert skipped == {"disk-encrypted", "n" * 40, "a:b"}
    assert tagged_names("Tailscale:fleetPolicy:one, Tailscale: fleetPolicy:two") == ("one", "two")
    assert policy_key("ok_Name1") == "fleetPolicy:ok_Name1" and policy_key("") is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a4:83:e7:11:22:33", "a483e7112233"), ("A4-83-E7-11-22-33", "a483e7112233"), ("a483.e711.2233", "a483e7112233"),
     ("", None), ("00:00:00:00:00:00", None), ("not a mac", None), ("a4:83:e7:11:22", None)],
)  # fmt: skip
def test_macs_are_normalized(given: str, expected: str | None) -> None:
    assert reported_mac(given) == expected
    assert agent_from_fleet(raw_host(1, primary_mac=given)).mac_addresses == ((expected,) if expected else ())


@pytest.mark.parametrize("status", ["mia", "missing"])
def test_missing_hosts_are_inactive(status: str) -> None:
    assert agent_from_fleet(raw_host(1, status=status)).active is False


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (None, "not an object"),
        (raw_host(1, id=None), "no usable id"),
        (raw_host(1, id=True), "no usable id"),
        (raw_host(1, hardware_serial=5), "hardware_serial"),
        (raw_host(1, primary_mac=5), "primary_mac"),
        (raw_host(1, policies={}), "policies is not a list"),
        (raw_host(1, policies=["x"]), "policy #1 is not an object"),
        (raw_host(1, policies=[policy("p", "Tailscale: fleetPolicy:x", "maybe")]), "not pass/fail"),
        (raw_host(1, policies=[policy("p", "Tailscale: fleetPolicy:x", True)]), "not pass/fail"),  # type: ignore[arg-type]
        (raw_host(1, seen_time="soon"), "seen_time"),
    ],
)
def test_malformed_hosts_are_refused(raw: Any, match: str) -> None:
    with pytest.raises(VendorDataError, match=match):
        agent_from_fleet(raw)


@pytest.mark.parametrize("body", [[], {}, {"hosts": {}}, {"hosts": None}])
def test_malformed_pages_are_data_errors(mock: respx.MockRouter, make: Callable[..., FleetClient], body: Any) -> None:
    mock.get(URL).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_auth_error_with_fleets_reason(
    mock: respx.MockRouter, make: Callable[..., FleetClient], status: int
) -> None:
    body = {"message": "Authentication required", "errors": [{"name": "base", "reason": f"bad {TOKEN}"}], "uuid": "u"}
    route = mock.get(URL).respond(status, json=body)
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert route.call_count == 1
    assert "Authentication required" in caught.value.message and TOKEN not in caught.value.message


def test_429_honours_retry_after(mock: respx.MockRouter, make: Callable[..., FleetClient], sleep: SimSleep) -> None:
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "4"}, json={"message": "Too many requests", "errors": []}),
            httpx.Response(200, json={"hosts": [raw_host(1)]}),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps == [4.0]


def test_a_failure_on_a_later_page_fails_the_whole_fetch(
    mock: respx.MockRouter, make: Callable[..., FleetClient]
) -> None:
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(200, json={"hosts": [raw_host(1), raw_host(2)]}),
            httpx.Response(502, json={"message": "Bad gateway", "errors": []}),
            httpx.Response(502, json={"message": "Bad gateway", "errors": []}),
        ]
    )
    with pytest.raises(VendorTransientError, match="502"):
        make(page_size=2, retry=RetryPolicy(max_attempts=2, budget=10.0, base=0.1, cap=0.1)).fetch_agents()


def test_skipped_names_are_logged_once(
    mock: respx.MockRouter, make: Callable[..., FleetClient], caplog: pytest.LogCaptureFixture
) -> None:
    bad = [policy("x", "Tailscale: fleetPolicy:bad-name", "pass")]
    mock.get(URL).respond(200, json={"hosts": [raw_host(1, policies=bad), raw_host(2, policies=bad)]})
    with caplog.at_level(logging.WARNING, logger="app.vendors.fleet"):
        make().fetch_agents()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bad-name" in warnings[0]


def test_verify_fetches_one_host(mock: respx.MockRouter, make: Callable[..., FleetClient]) -> None:
    route = mock.get(URL).respond(200, json={"hosts": [raw_host(1)]})
    assert make().verify() == 1
    params = route.calls[0].request.url.params
    assert route.call_count == 1 and (params["page"], params["per_page"]) == ("0", "1")


def test_verify_refuses_something_that_is_not_fleet(mock: respx.MockRouter, make: Callable[..., FleetClient]) -> None:
    mock.get(URL).respond(200, json={"items": []})
    with pytest.raises(VendorError):
        make().verify()


def test_url_and_settings() -> None:
    assert normalize_base_url("fleet.example.com/api/v1/fleet/") == BASE
    assert normalize_base_url("http://127.0.0.1:8412") == "http://127.0.0.1:8412"
    for bad in ("", "ftp://x", "https://user:pw@fleet.example.com"):
        with pytest.raises(ValueError):
            normalize_base_url(bad)
    with pytest.raises(ValueError, match="API token"):
        build({"url": BASE, "api_token": ""})
    with pytest.raises(ValueError, match="team id"):
        build({"url": BASE, "api_token": TOKEN, "team_id": "two"})
    client = build({"url": BASE, "api_token": TOKEN, "team_id": " 3 "})
    try:
        assert client.team_id == 3 and TOKEN not in repr(client)
    finally:
        client.close()


def test_spec_declares_the_policy_family() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace, SPEC.namespaces) == (
        "fleet",
        "Fleet",
        "fleet",
        ("fleet", "fleetPolicy"),
    )
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [
        ("url", False, True),
        ("api_token", True, True),
        ("team_id", False, False),
    ]
    assert [(a.key, a.type) for a in SPEC.attributes] == [("fleet:present", "boolean")]
    (family,) = SPEC.families
    assert (family.prefix, family.type, family.namespace) == ("fleetPolicy:", "boolean", "fleetPolicy")
