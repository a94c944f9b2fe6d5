"""OAuthTokens against respx: fetch and cache, renewal before expiry, one refetch on a refused cached token,
error mapping and redaction of the client secret."""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from app.vendors._http import VendorHttp
from app.vendors._oauth import OAuthTokens
from app.vendors.base import VendorAuthError, VendorDataError, VendorError, VendorTransientError

TOKEN_URL = "https://auth.example.com/oauth2/token"
API_URL = "https://api.example.com/things"
SECRET = "s3cr3t-client-secret-value"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SimSleep:
    def __init__(self, clock: FakeMonotonic) -> None:
        self.clock = clock
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def make(client: httpx.Client, clock: FakeMonotonic, **kwargs: Any) -> OAuthTokens:
    kwargs.setdefault("sleep", SimSleep(clock))
    kwargs.setdefault("rng", random.Random(3))
    return OAuthTokens(
        client,
        label="Acme",
        token_url=TOKEN_URL,
        client_id=kwargs.pop("client_id", "cid-1"),
        client_secret=kwargs.pop("client_secret", SECRET),
        monotonic=clock,
        **kwargs,
    )


def issued(*values: str, expires_in: Any = 1799, status: int = 201) -> list[httpx.Response]:
    return [
        httpx.Response(status, json={"access_token": v, "token_type": "bearer", "expires_in": expires_in})
        for v in values
    ]


def test_fetches_once_and_caches(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    route = mock.post(TOKEN_URL).mock(side_effect=issued("tok-1"))
    tokens = make(client, clock, form={"scope": "https://graph.example/.default"})
    assert tokens.token() == "tok-1"
    clock.now += 1000
    assert tokens.headers() == {"Authorization": "Bearer tok-1"}
    assert route.call_count == 1 and tokens.fetches == 1
    form = parse_qs(route.calls[0].request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["cid-1"],
        "client_secret": [SECRET],
        "scope": ["https://graph.example/.default"],
    }


def test_renews_before_expiry_not_after(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    route = mock.post(TOKEN_URL).mock(side_effect=issued("tok-1", "tok-2", expires_in=1799))
    tokens = make(client, clock)
    assert tokens.token() == "tok-1"
    clock.now += 1799 - 61  # still more than the 60 s margin left
    assert tokens.token() == "tok-1"
    clock.now += 2  # 59 s left: renewed while the old token would still work
    assert tokens.token() == "tok-2"
    assert route.call_count == 2


def test_short_lifetimes_renew_at_three_quarters(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic
) -> None:
    mock.post(TOKEN_URL).mock(side_effect=issued("a", "b", expires_in="120"))
    tokens = make(client, clock)
    assert tokens.token() == "a"
    clock.now += 89
    assert tokens.token() == "a"
    clock.now += 1
    assert tokens.token() == "b"


def test_missing_expires_in_uses_default_ttl(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic
) -> None:
    mock.post(TOKEN_URL).mock(side_effect=[httpx.Response(200, json={"access_token": "x"}), *issued("y", status=200)])
    tokens = make(client, clock, default_ttl=100)
    assert tokens.token() == "x"
    clock.now += 76
    assert tokens.token() == "y"


def test_basic_auth_keeps_secret_out_of_form(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic
) -> None:
    route = mock.post(TOKEN_URL).mock(side_effect=issued("t"))
    make(client, clock, basic_auth=True, form={"scope": "api"}).token()
    request = route.calls[0].request
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"cid-1:{SECRET}".encode()).decode()
    assert parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"], "scope": ["api"]}


def test_call_refetches_once_when_cached_token_refused(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic
) -> None:
    mock.post(TOKEN_URL).mock(side_effect=issued("old", "new"))
    api = mock.get(API_URL).mock(
        side_effect=lambda request: (
            httpx.Response(200, json={"ok": True})
            if request.headers["Authorization"] == "Bearer new"
            else httpx.Response(401, json={"errors": [{"code": 401, "message": "access denied, authorization failed"}]})
        )
    )
    tokens = make(client, clock)
    http = VendorHttp(client, label="Acme", sleep=SimSleep(clock), monotonic=clock)
    assert tokens.token() == "old"  # cached now; the vendor revokes it early
    body = tokens.call(lambda headers: http.get_json(API_URL, params={}, headers=headers))
    assert body == {"ok": True}
    assert api.call_count == 2 and tokens.fetches == 2
    assert tokens.call(lambda headers: http.get_json(API_URL, params={}, headers=headers)) == {"ok": True}
    assert tokens.fetches == 2


def test_call_gives_up_after_one_refetch(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    mock.post(TOKEN_URL).mock(side_effect=issued("old", "new", "never"))
    api = mock.get(API_URL).mock(return_value=httpx.Response(401, json={"message": "nope"}))
    tokens = make(client, clock)
    http = VendorHttp(client, label="Acme", sleep=SimSleep(clock), monotonic=clock)
    tokens.token()
    with pytest.raises(VendorAuthError):
        tokens.call(lambda headers: http.get_json(API_URL, params={}, headers=headers))
    assert api.call_count == 2 and tokens.fetches == 2


def test_call_with_fresh_token_does_not_refetch(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic
) -> None:
    mock.post(TOKEN_URL).mock(side_effect=issued("fresh", "unused"))
    api = mock.get(API_URL).mock(return_value=httpx.Response(403, json={"message": "missing scope"}))
    tokens = make(client, clock)
    http = VendorHttp(client, label="Acme", sleep=SimSleep(clock), monotonic=clock)
    with pytest.raises(VendorAuthError):
        tokens.call(lambda headers: http.get_json(API_URL, params={}, headers=headers))
    assert api.call_count == 1 and tokens.fetches == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client", "error_description": f"AADSTS7000215: Invalid client secret {SECRET}"}),
        (403, {"errors": [{"code": 403, "message": "Failed to issue access token - Not Authorized"}]}),
        (400, {"error": "unauthorized_client", "error_description": "not allowed"}),
    ],
)
def test_refused_credentials_are_auth_errors_without_the_secret(
    mock: respx.MockRouter,
    client: httpx.Client,
    clock: FakeMonotonic,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any],
) -> None:
    mock.post(TOKEN_URL).mock(return_value=httpx.Response(status, json=body))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(VendorAuthError) as err:
        make(client, clock).token()
    assert SECRET not in err.value.message and SECRET not in str(err.value)
    assert SECRET not in caplog.text
    assert "Acme refused the client credentials" in err.value.message


def test_other_client_error_names_the_cause(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    mock.post(TOKEN_URL).mock(
        return_value=httpx.Response(400, json={"error": "invalid_request", "error_description": "AADSTS90002: Tenant"})
    )
    with pytest.raises(VendorError) as err:
        make(client, clock).token()
    assert not isinstance(err.value, VendorAuthError)
    assert "AADSTS90002" in err.value.message


def test_rate_limited_then_issued(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    sleep = SimSleep(clock)
    mock.post(TOKEN_URL).mock(side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), *issued("t")])
    assert make(client, clock, sleep=sleep).token() == "t"
    assert sleep.sleeps == [7.0]


def test_server_errors_become_transient(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    mock.post(TOKEN_URL).mock(return_value=httpx.Response(503))
    with pytest.raises(VendorTransientError):
        make(client, clock).token()


def test_network_failure_is_transient(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    mock.post(TOKEN_URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(VendorTransientError, match="did not answer"):
        make(client, clock).token()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>login</html>"),
        httpx.Response(200, json=["x"]),
        httpx.Response(200, json={"token_type": "bearer", "expires_in": 10}),
        httpx.Response(200, json={"access_token": "t", "token_type": "mac", "expires_in": 10}),
        httpx.Response(200, json={"access_token": "t", "expires_in": "soon"}),
        httpx.Response(200, json={"access_token": "t", "expires_in": 0}),
        httpx.Response(200, json={"access_token": "t", "expires_in": True}),
    ],
)
def test_malformed_token_answers_are_data_errors(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic, response: httpx.Response
) -> None:
    mock.post(TOKEN_URL).mock(return_value=response)
    with pytest.raises(VendorDataError):
        make(client, clock).token()


def test_invalidate_forces_a_new_token(mock: respx.MockRouter, client: httpx.Client, clock: FakeMonotonic) -> None:
    mock.post(TOKEN_URL).mock(side_effect=issued("a", "b"))
    tokens = make(client, clock)
    assert tokens.token() == "a"
    tokens.invalidate()
    assert tokens.token() == "b"


def test_repr_and_constructor_keep_the_secret(client: httpx.Client, clock: FakeMonotonic) -> None:
    tokens = make(client, clock)
    assert SECRET not in repr(tokens)
    with pytest.raises(ValueError):
        make(client, clock, client_secret="")
