"""JamfProClient against respx: token fetch and renewal before expiry, v4 → v3 → v1 fallback, page paging with
sections, mapping (MACs, null → unset), retries and errors, verify."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from app.vendors._fields import reported_mac
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError
from app.vendors.jamfpro import (
    SPEC,
    JamfProClient,
    agent_from_jamf,
    next_page,
    normalize_server_url,
)
from tests.fakes.sim_time import Mono, SimSleep

SERVER = "https://example.jamfcloud.com"
TOKEN_URL = f"{SERVER}/api/oauth/token"
V4 = f"{SERVER}/api/v4/computers-inventory"
V3 = f"{SERVER}/api/v3/computers-inventory"
V1 = f"{SERVER}/api/v1/computers-inventory"
CLIENT_ID = "5b8f1a4e-unit"
SECRET = "jamf-unit-client-secret"


def computer(i: int, **sections: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": str(i),
        "udid": f"UDID-{i}",
        "general": {
            "name": f"mac-{i}",
            "platform": "Mac",
            "reportDate": "2026-11-30T07:58:12.114Z",
            "lastContactTime": "2026-11-30T09:01:40.000Z",
            "remoteManagement": {"managed": True},
            "supervised": True,
        },
        "hardware": {"serialNumber": f"C02SN{i:04d}", "macAddress": "A4:83:E7:11:22:33", "altMacAddress": None},
        "security": {"sipStatus": "ENABLED", "firewallEnabled": True},
        "operatingSystem": {"name": "macOS", "version": "15.6.1", "fileVault2Status": "ALL_ENCRYPTED"},
    }
    for key, update in sections.items():
        record[key] = None if update is None else {**record[key], **update}
    return record


def inventory(computers: list[dict[str, Any]], total: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"results": computers}
    if total is not None:
        body["totalCount"] = total
    return body


def token_response(value: str = "tok-1", expires_in: int = 599) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": value, "scope": "api-role:2", "token_type": "Bearer", "expires_in": expires_in}
    )


@pytest.fixture
def clock() -> Mono:
    return Mono(500.0)


@pytest.fixture
def sleep(clock: Mono) -> SimSleep:
    return SimSleep(clock)


@pytest.fixture
def make(clock: Mono, sleep: SimSleep) -> Iterator[Callable[..., JamfProClient]]:
    clients: list[JamfProClient] = []

    def factory(**kwargs: Any) -> JamfProClient:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("rng", random.Random(5))
        kwargs.setdefault("clock", clock)
        client = JamfProClient(kwargs.pop("url", SERVER), CLIENT_ID, kwargs.pop("client_secret", SECRET), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def paged(
    mock: respx.MockRouter, url: str, pages: dict[str, httpx.Response], seen: list[httpx.Request] | None = None
) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return pages[request.url.params["page"]]

    return mock.get(url).mock(side_effect=answer)


# -- token, versions, paging -----------------------------------------------------------------------------------


def test_token_then_v4_pages_with_sections_sort_and_progress(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    token = mock.post(TOKEN_URL).mock(return_value=token_response("tok-1"))
    seen: list[httpx.Request] = []
    paged(
        mock,
        V4,
        {
            "0": httpx.Response(200, json=inventory([computer(1), computer(2)], 5)),
            "1": httpx.Response(200, json=inventory([computer(3), computer(4)], 5)),
            "2": httpx.Response(200, json=inventory([computer(5)], 5)),
        },
        seen,
    )
    progress: list[tuple[int, int | None]] = []
    client = make(page_size=2)
    agents = client.fetch_agents(progress=lambda n, total: progress.append((n, total)))

    assert [a.hostname for a in agents] == [f"mac-{i}" for i in range(1, 6)]
    assert progress == [(2, 5), (4, 5), (5, 5)] and client.version == "v4"
    form = parse_qs(token.calls.last.request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "client_id": [CLIENT_ID], "client_secret": [SECRET]}
    assert token.call_count == 1
    for number, request in enumerate(seen):
        assert request.url.params.get_list("section") == ["GENERAL", "HARDWARE", "SECURITY", "OPERATING_SYSTEM"]
        assert (request.url.params["page"], request.url.params["page-size"]) == (str(number), "2")
        assert request.url.params["sort"] == "id:asc"
        assert request.headers["Authorization"] == "Bearer tok-1"


def test_falls_back_from_v4_to_v3_to_v1_on_404_and_remembers(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    not_found = {"httpStatus": 404, "errors": [{"code": "NOT_FOUND", "description": "Not Found"}]}
    v4 = mock.get(V4).respond(404, json=not_found)
    v3 = mock.get(V3).respond(404, json=not_found)
    v1 = mock.get(V1).respond(200, json=inventory([computer(1)], 1))
    client = make()
    assert len(client.fetch_agents()) == 1
    assert (client.version, v4.call_count, v3.call_count, v1.call_count) == ("v1", 1, 1, 1)
    assert len(client.fetch_agents()) == 1  # the next sync goes straight to v1
    assert (v4.call_count, v3.call_count, v1.call_count) == (1, 1, 2)


def test_no_inventory_api_at_all_says_check_the_url(mock: respx.MockRouter, make: Callable[..., JamfProClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    for url in (V4, V3, V1):
        mock.get(url).respond(404, text="<html>not here</html>")
    with pytest.raises(VendorError, match="check the server URL") as caught:
        make().fetch_agents()
    assert not isinstance(caught.value, VendorAuthError | VendorTransientError)


def test_the_token_is_renewed_before_it_expires(
    mock: respx.MockRouter, make: Callable[..., JamfProClient], clock: Mono
) -> None:
    """A 10-minute token is renewed after 9 minutes, before the server would refuse it."""
    token = mock.post(TOKEN_URL).mock(side_effect=[token_response("tok-1", 600), token_response("tok-2", 600)])
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = int(request.url.params["page"])
        if page == 1:
            clock.now += 545  # paging took 9+ minutes
        return httpx.Response(200, json=inventory([computer(page + 1)], 3))

    mock.get(V4).mock(side_effect=answer)
    assert len(make(page_size=1).fetch_agents()) == 3
    assert token.call_count == 2
    assert [r.headers["Authorization"] for r in seen] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_a_cached_token_refused_mid_paging_is_replaced_once(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    token = mock.post(TOKEN_URL).mock(side_effect=[token_response("tok-1"), token_response("tok-2")])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer tok-1" and request.url.params["page"] == "1":
            return httpx.Response(401, json={"httpStatus": 401, "errors": []})
        page = int(request.url.params["page"])
        return httpx.Response(200, json=inventory([computer(page + 1)], 2))

    mock.get(V4).mock(side_effect=answer)
    assert len(make(page_size=1).fetch_agents()) == 2
    assert token.call_count == 2


def test_wrong_client_credentials_raise_auth_error_without_the_secret(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    mock.post(TOKEN_URL).respond(401, json={"error": "invalid_client", "error_description": f"bad {SECRET}"})
    inventory_route = mock.get(V4).respond(200, json=inventory([], 0))
    with pytest.raises(VendorAuthError) as caught:
        make().fetch_agents()
    assert SECRET not in str(caught.value) and inventory_route.call_count == 0


def test_a_fresh_token_refused_by_the_inventory_means_missing_privileges(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    token = mock.post(TOKEN_URL).mock(return_value=token_response())
    mock.get(V4).respond(403, json={"httpStatus": 403, "errors": [{"code": "FORBIDDEN", "description": "Forbidden"}]})
    with pytest.raises(VendorAuthError, match="FORBIDDEN: Forbidden"):
        make().fetch_agents()
    assert token.call_count == 1


def test_429_and_503_are_retried_honouring_retry_after(
    mock: respx.MockRouter, make: Callable[..., JamfProClient], sleep: SimSleep
) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    route = mock.get(V4).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "6"}),
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.Response(200, json=inventory([computer(1)], 1)),
        ]
    )
    assert len(make().fetch_agents()) == 1
    assert sleep.sleeps == [6.0, 2.0] and route.call_count == 3


def test_5xx_mid_paging_exhausts_retries_and_returns_nothing(
    mock: respx.MockRouter, make: Callable[..., JamfProClient], sleep: SimSleep
) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    seen: list[httpx.Request] = []
    paged(
        mock,
        V4,
        {"0": httpx.Response(200, json=inventory([computer(1)], 3)), "1": httpx.Response(502)},
        seen,
    )
    with pytest.raises(VendorTransientError, match="HTTP 502"):
        make(page_size=1).fetch_agents()
    assert len(seen) == 6


@pytest.mark.parametrize(
    "body",
    [
        [computer(1)],
        {"totalCount": 1},
        {"totalCount": 2, "results": [computer(1), "x"]},
        {"totalCount": "2", "results": []},
        {"totalCount": 1, "results": [computer(1, general={"supervised": "yes"})]},
    ],
)
def test_malformed_pages_raise_data_error(
    mock: respx.MockRouter, make: Callable[..., JamfProClient], body: Any
) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    mock.get(V4).respond(200, json=body)
    with pytest.raises(VendorDataError):
        make().fetch_agents()


def test_an_empty_page_before_the_total_is_a_data_error(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    paged(
        mock,
        V4,
        {"0": httpx.Response(200, json=inventory([computer(1)], 9)), "1": httpx.Response(200, json=inventory([], 9))},
    )
    with pytest.raises(VendorDataError, match="empty page 1 of 9"):
        make(page_size=1).fetch_agents()


def test_next_page() -> None:
    assert next_page(0, 200, 201, 200, "/p") == 1
    assert next_page(1, 1, 201, 200, "/p") is None
    assert next_page(0, 0, 0, 200, "/p") is None
    assert next_page(0, 200, None, 200, "/p") == 1
    assert next_page(3, 7, None, 200, "/p") is None


# -- mapping -------------------------------------------------------------------------------------------------


def test_the_reference_sample_maps_as_documented() -> None:
    first = agent_from_jamf(
        {
            "id": "17",
            "general": {
                "name": "ana-mbp",
                "platform": "Mac",
                "reportDate": "2026-11-30T07:58:12.114Z",
                "lastContactTime": "2026-11-30T09:01:40.000Z",
                "remoteManagement": {"managed": True},
                "supervised": True,
            },
            "hardware": {
                "serialNumber": "C02ZK1ABMD6T",
                "macAddress": "A4:83:E7:11:22:33",
                "altMacAddress": "36:C1:92:44:55:66",
            },
            "security": {"sipStatus": "ENABLED", "firewallEnabled": True},
            "operatingSystem": {"name": "macOS", "version": "15.6.1", "fileVault2Status": "ALL_ENCRYPTED"},
        }
    )
    assert (first.vendor, first.id, first.hostname, first.serial) == ("jamfpro", "17", "ana-mbp", "C02ZK1ABMD6T")
    assert dict(first.attributes) == {
        "jamfPro:remoteManaged": True,
        "jamfPro:supervised": True,
        "jamfPro:firewallEnabled": True,
        "jamfPro:fileVaultStatus": "ALL_ENCRYPTED",
        "jamfPro:SIPEnabled": "ENABLED",
    }
    assert first.mac_addresses == ("a483e7112233", "36c192445566")
    assert first.last_seen == datetime(2026, 11, 30, 9, 1, 40, tzinfo=UTC)

    second = agent_from_jamf(
        computer(
            23,
            general={"remoteManagement": {"managed": False}, "supervised": False},
            hardware={"macAddress": "14:98:77:AA:BB:CC", "altMacAddress": None},
            security={"sipStatus": "DISABLED", "firewallEnabled": False},
            operatingSystem={"fileVault2Status": "NOT_ENCRYPTED"},
        )
    )
    assert dict(second.attributes) == {
        "jamfPro:remoteManaged": False,
        "jamfPro:supervised": False,
        "jamfPro:firewallEnabled": False,
        "jamfPro:fileVaultStatus": "NOT_ENCRYPTED",
        "jamfPro:SIPEnabled": "DISABLED",
    }
    assert second.mac_addresses == ("149877aabbcc",)


def test_v4_field_names_are_read() -> None:
    general = {"lastContactTime": None, "lastContact": "2026-12-01T10:00:00Z", "lastCheckIn": "2026-12-01T09:00:00Z"}
    agent = agent_from_jamf(computer(1, general=general))
    assert agent.last_seen == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_nulls_and_missing_sections_leave_attributes_unset() -> None:
    agent = agent_from_jamf(
        computer(
            1,
            general={"supervised": None, "remoteManagement": None},
            security={"firewallEnabled": None, "sipStatus": None},
            operatingSystem=None,
        )
    )
    assert dict(agent.attributes) == {}
    bare = agent_from_jamf({"id": 7, "general": {"name": "only-general"}})
    assert (bare.id, bare.serial, dict(bare.attributes), bare.mac_addresses) == ("7", None, {}, ())


def test_not_collected_sip_is_written_verbatim_as_tailscale_does() -> None:
    agent = agent_from_jamf(computer(1, security={"sipStatus": "NOT_COLLECTED"}))
    assert agent.attributes["jamfPro:SIPEnabled"] == "NOT_COLLECTED"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("A4:83:E7:11:22:33", "a483e7112233"),
        ("a4-83-e7-11-22-33", "a483e7112233"),
        ("A483.E711.2233", "a483e7112233"),
        ("a483e7112233", "a483e7112233"),
        ("00:00:00:00:00:00", None),
        ("FF:FF:FF:FF:FF:FF", None),
        ("not a mac", None),
        ("A4:83:E7:11:22", None),
    ],
)
def test_jamf_mac(given: str, expected: str | None) -> None:
    assert reported_mac(given) == expected  # the shared reader Jamf's MACs go through


def test_duplicate_and_unusable_macs_are_dropped() -> None:
    agent = agent_from_jamf(computer(1, hardware={"macAddress": "A4:83:E7:11:22:33", "altMacAddress": "a483e7112233"}))
    assert agent.mac_addresses == ("a483e7112233",)
    assert agent_from_jamf(computer(1, hardware={"macAddress": "", "altMacAddress": "zz"})).mac_addresses == ()


def test_malformed_computers_are_refused() -> None:
    with pytest.raises(VendorDataError, match="not an object"):
        agent_from_jamf(None)
    with pytest.raises(VendorDataError, match="no usable id"):
        agent_from_jamf({"id": ""})
    with pytest.raises(VendorDataError, match="hardware is not an object"):
        agent_from_jamf({"id": "1", "hardware": "C02"})
    with pytest.raises(VendorDataError, match="firewallEnabled"):
        agent_from_jamf(computer(1, security={"firewallEnabled": "true"}))
    with pytest.raises(VendorDataError, match="fileVault2Status"):
        agent_from_jamf(computer(1, operatingSystem={"fileVault2Status": 3}))
    with pytest.raises(VendorDataError, match="macAddress"):
        agent_from_jamf(computer(1, hardware={"macAddress": 42}))
    with pytest.raises(VendorDataError, match="lastContactTime"):
        agent_from_jamf(computer(1, general={"lastContactTime": "soon"}))


# -- verify, URL, spec ---------------------------------------------------------------------------------------------


def test_verify_fetches_one_computer(mock: respx.MockRouter, make: Callable[..., JamfProClient]) -> None:
    mock.post(TOKEN_URL).mock(return_value=token_response())
    route = mock.get(V4).respond(200, json=inventory([computer(1)], 300))
    assert make().verify() == 1
    assert route.calls.last.request.url.params["page-size"] == "1" and route.call_count == 1


def test_verify_refuses_wrong_credentials_and_non_jamf_answers(
    mock: respx.MockRouter, make: Callable[..., JamfProClient]
) -> None:
    mock.post(TOKEN_URL).respond(401, json={"error": "invalid_client"})
    with pytest.raises(VendorAuthError):
        make().verify()
    mock.post(TOKEN_URL).mock(return_value=token_response())
    mock.get(V4).respond(200, json={"totalCount": 1, "results": [{"name": "not a computer"}]})
    with pytest.raises(VendorDataError):
        make().verify()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (SERVER, SERVER),
        (f"{SERVER}/", SERVER),
        ("example.jamfcloud.com", SERVER),
        (f"{SERVER}/api", SERVER),
        (f"{SERVER}/api/v1/", SERVER),
        ("https://jamf.corp.example:8443", "https://jamf.corp.example:8443"),
    ],
)
def test_server_url_normalization(given: str, expected: str) -> None:
    assert normalize_server_url(given) == expected


@pytest.mark.parametrize("bad", ["", "ftp://example.jamfcloud.com", "https://u:p@example.jamfcloud.com"])
def test_bad_server_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="server URL"):
        normalize_server_url(bad)


def test_spec_describes_fields_and_attributes() -> None:
    assert (SPEC.id, SPEC.label, SPEC.namespace) == ("jamfpro", "Jamf Pro", "jamfPro")
    assert [(f.name, f.secret, f.required) for f in SPEC.fields] == [
        ("url", False, True),
        ("client_id", False, True),
        ("client_secret", True, True),
    ]
    attributes = {a.key: a for a in SPEC.attributes}
    assert {k: a.type for k, a in attributes.items()} == {
        "jamfPro:remoteManaged": "boolean",
        "jamfPro:supervised": "boolean",
        "jamfPro:firewallEnabled": "boolean",
        "jamfPro:fileVaultStatus": "string",
        "jamfPro:SIPEnabled": "string",
    }
    assert set(attributes["jamfPro:SIPEnabled"].values) == {"NOT_COLLECTED", "NOT_AVAILABLE", "DISABLED", "ENABLED"}
    assert "BOOT_ENCRYPTED" in attributes["jamfPro:fileVaultStatus"].values
    assert all(a.description for a in SPEC.attributes)


def test_spec_build(mock: respx.MockRouter) -> None:
    client = SPEC.build({"url": "example.jamfcloud.com/", "client_id": f" {CLIENT_ID} ", "client_secret": SECRET})
    try:
        assert isinstance(client, JamfProClient)
        assert client.url == SERVER and SECRET not in repr(client)
        mock.post(TOKEN_URL).mock(return_value=token_response("built"))
        route = mock.get(V4).respond(200, json=inventory([], 0))
        assert client.fetch_agents() == []
        assert route.calls.last.request.headers["Authorization"] == "Bearer built"
    finally:
        client.close()
    with pytest.raises(ValueError, match="client id and client secret"):
        SPEC.build({"url": SERVER, "client_id": CLIENT_ID, "client_secret": ""})
    with pytest.raises(ValueError, match="server URL"):
        SPEC.build({"client_id": CLIENT_ID, "client_secret": SECRET})
