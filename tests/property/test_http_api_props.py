"""Properties of the built-in HTTP API over arbitrary requests, sent to a real server on 127.0.0.1.

Whatever the method, path (escaped or not), query, headers, credentials and body: the answer is never a
5xx; an error is ``{"message": "..."}`` as JSON with a 4xx; a refused write changes nothing; no write gets
past the API without valid credentials; and everything the store holds afterwards passes the README's attribute rules.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from app.core.clock import FrozenClock
from app.core.timefmt import ZERO_TIME
from app.db import Database
from app.db.tables import AttributeKeyRow, AttributeRow
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore, FailedAuthLimiter
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from app.web.server import make_server
from tests.property import shown, store_problems, store_snapshot
from tests.property.test_attribute_rules_props import (
    comments,
    json_values,
    keys,
    raw_expiries,
    valid_keys,
    valid_values,
    values,
)

ADMIN = Actor("cli:admin")
API_NAMESPACES = frozenset({"custom"})
ERROR_STATUSES = {400, 401, 403, 404, 405, 413, 429}
FIXTURE_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@dataclass
class World:
    """The server under test and what the strategies pick from."""

    url: str
    db: Database
    clock: FrozenClock
    devices: list[Device]
    api_key: str
    token: str
    read_token: str
    http: httpx.Client = field(repr=False)


@pytest.fixture
def world(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> Iterator[World]:
    owner = Actor("cli:setup")
    devices = [
        builtin.add_device(name="laptop.tail1.ts.net", user="a@example.com", os="macos", actor=owner),
        builtin.add_device(name="server.tail1.ts.net", user="b@example.com", os="linux", actor=owner),
    ]
    store = AuthStore(db, clock=clock)
    api_key = store.create_api_key(actor=ADMIN)[1]
    full, full_secret = store.create_oauth_client(actor=ADMIN, scopes=["all"])
    reader, reader_secret = store.create_oauth_client(actor=ADMIN, scopes=["all:read"])
    # failures are the point here: the failed-authentication limit has its own tests
    api = make_api(builtin, db, clock=clock, limiter=FailedAuthLimiter(limit=10**9))
    server = make_server(api, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            token = store.issue_token(full.id, full_secret).access_token
            read_token = store.issue_token(reader.id, reader_secret).access_token
            yield World(url, db, clock, devices, api_key, token, read_token, http)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- strategies ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request, with what it was built from (so the checks know what a success must have done)."""

    method: str
    segments: tuple[str, ...]
    escape: str  # "all": every segment percent-escaped; "colon": ':' left as is; "raw": sent as typed
    query: tuple[tuple[str, str], ...]
    credential: str  # "apikey-basic", "apikey-bearer", "token", "read-token", "none", "garbage"
    garbage: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    content_type: str | None
    device: int | None = None  # the device a route-shaped path names, if any
    key: str | None = None

    def path(self) -> str:
        if self.escape == "raw":
            return "/" + "/".join(self.segments)
        safe = ":" if self.escape == "colon" else ""
        return "/" + "/".join(quote(segment, safe=safe, errors="surrogatepass") for segment in self.segments)


methods = st.one_of(
    st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT", "OPTIONS", "TRACE", "HEAD"]),
    st.from_regex(r"[A-Z]{1,10}", fullmatch=True).filter(lambda m: m != "CONNECT"),
    st.sampled_from(["get", "Post", "M-SEARCH", "PROPFIND"]),
)
segment_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", ".", "..", "%", "%zz", "%ff", "%00", "%2F", "%3A", "custom%3AprodAccess", "-", "api"]),
    st.text(alphabet=st.characters(codec="ascii"), max_size=12),
)


@st.composite
def attribute_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.integers(min_value=0, max_value=9)) > 0:
        body["value"] = draw(values)
    if draw(st.booleans()):
        body["expiry"] = draw(raw_expiries)
    if draw(st.booleans()):
        body["comment"] = draw(comments)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        body[draw(st.text(max_size=8))] = draw(json_values)
    return body


@st.composite
def plausible_body(draw: st.DrawFn) -> dict[str, Any]:
    """What a correct client sends: a valid value, perhaps a future expiry and a short comment."""
    body: dict[str, Any] = {"value": draw(valid_values)}
    if draw(st.booleans()):
        body["expiry"] = draw(st.sampled_from(["2026-11-21T13:00:00Z", "2027-01-01T00:00:00+01:00", "", ZERO_TIME]))
    if draw(st.booleans()):
        body["comment"] = draw(st.text(max_size=30))
    return body


@st.composite
def bodies(draw: st.DrawFn, shaped: dict[str, Any] | None) -> tuple[bytes | None, str | None]:
    """A body and its Content-Type: JSON (often shaped like the route wants), non-JSON bytes, or none."""
    kind = draw(st.sampled_from(["shaped", "shaped", "json", "bytes", "none", "nan", "huge", "deep", "form"]))
    content_type = draw(
        st.sampled_from(
            ["application/json", "application/json", "application/x-www-form-urlencoded", "text/plain", None]
        )
        | HEADER_TEXT
    )
    if kind == "shaped" and shaped is not None:
        return json.dumps(shaped).encode(), content_type
    if kind == "json":
        return json.dumps(jsonable(draw(json_values))).encode(), content_type
    if kind == "bytes":
        return draw(st.binary(max_size=200)), content_type
    if kind == "huge":
        return b'{"value": ' + b"9" * draw(st.sampled_from([16, 400, 4301, 20_000])) + b"}", content_type
    if kind == "nan":
        return b'{"value": NaN, "expiry": Infinity, "comment": -Infinity}', content_type
    if kind == "deep":
        depth = draw(st.integers(min_value=100, max_value=200_000))
        return b'{"value": ' + b"[" * depth + b"]" * draw(st.sampled_from([0, depth])) + b"}", content_type
    if kind == "form":
        pairs = draw(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=4))
        return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode(), content_type
    return None, content_type


def jsonable(value: Any) -> Any:
    """``value`` with the integers ``json.dumps`` cannot write (over 4300 digits) replaced by a string."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 14_000:
        return shown(value)
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value


@st.composite
def calls(draw: st.DrawFn) -> Call:
    """A request: mostly route-shaped (real or random device, random key), sometimes any path at all."""
    shape = draw(
        st.sampled_from(["set", "set", "set", "delete", "patch", "patch", "get", "device", "devices", "token", "any"])
    )
    device = draw(st.integers(min_value=0, max_value=1))
    device_ref = draw(st.sampled_from(["id", "node", "id", "other"]))
    ref_text = {"id": "{id}", "node": "{node}", "other": draw(segment_text)}[device_ref]
    plausible = draw(st.integers(min_value=0, max_value=2)) == 0  # what a correct client sends, mostly
    key = draw(valid_keys if plausible else keys)
    shaped: dict[str, Any] | None = None
    method = draw(methods) if draw(st.integers(min_value=0, max_value=4)) == 0 else ""
    if shape in ("set", "delete"):
        segments = ("api", "v2", "device", ref_text, "attributes", key)
        method = method or ("POST" if shape == "set" else "DELETE")
        shaped = jsonable(draw(plausible_body() if plausible else attribute_body()))
    elif shape == "patch":
        tailnet = draw(
            st.sampled_from(["-", "example.com", "EXAMPLE.com"]) | (st.nothing() if plausible else segment_text)
        )
        segments = ("api", "v2", "tailnet", tailnet, "device-attributes")
        method = method or "PATCH"
        if (
            plausible and draw(st.integers(min_value=0, max_value=2)) > 0
        ):  # one attribute changed twice: by the device's id, then nodeId
            nodes = {"{id}": {key: draw(plausible_body())}, "{node}": {key: draw(st.none() | plausible_body())}}
        elif plausible:  # valid changes; {id} and {node} name one device
            nodes = draw(
                st.dictionaries(
                    st.sampled_from(["{id}", "{node}", "{other}"]),
                    st.dictionaries(
                        st.sampled_from(["custom:prodAccess", "custom:tier", key]),
                        st.none() | plausible_body(),
                        min_size=1,
                        max_size=2,
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
        else:
            nodes = draw(
                st.dictionaries(
                    st.sampled_from(["{id}", "{node}", "{other}"]) | segment_text,
                    st.dictionaries(keys, st.none() | attribute_body() | json_values, max_size=3) | json_values,
                    max_size=3,
                )
            )
        shaped = jsonable({"nodes": nodes, "comment": draw(st.text(max_size=30) if plausible else comments)})
    elif shape == "get":
        segments = ("api", "v2", "device", ref_text, "attributes")
        method = method or "GET"
    elif shape == "device":
        segments = ("api", "v2", "device", ref_text)
        method = method or "GET"
    elif shape == "devices":
        segments = ("api", "v2", "tailnet", draw(st.sampled_from(["-", "example.com"]) | segment_text), "devices")
        method = method or "GET"
    elif shape == "token":
        segments = ("api", "v2", "oauth", "token")
        method = method or "POST"
    else:
        segments = tuple(draw(st.lists(segment_text, max_size=7)))
    body, content_type = (
        (json.dumps(shaped).encode(), "application/json") if plausible and shaped else draw(bodies(shaped))
    )
    query = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["fields", "x"]) | st.text(max_size=6),
                    st.sampled_from(["all", ""]) | st.text(max_size=10),
                ),
                max_size=3,
            )
        )
    )
    headers = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["X-Forwarded-For", "Accept", "X-Slack-Signature", "Cookie"])
                    | st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
                    HEADER_TEXT,
                ),
                max_size=3,
            )
        )
    )
    return Call(
        method=method or draw(methods),
        segments=segments,
        escape=draw(st.sampled_from(["all", "colon", "raw"])),
        query=query,
        credential="apikey-bearer"
        if plausible
        else draw(
            st.sampled_from(
                ["apikey-basic", "apikey-bearer", "apikey-bearer", "token", "read-token", "none", "garbage"]
            )
        ),
        garbage=draw(HEADER_TEXT),
        headers=headers,
        body=body,
        content_type=content_type,
        device=device if device_ref in ("id", "node") else None,
        key=key if shape in ("set", "delete") else None,
    )


# -- sending and checking -----------------------------------------------------------------------------


def send(world: World, call: Call) -> httpx.Response:
    """Send ``call`` (device placeholders filled in) as it is: no retries, no redirects, no normalizing."""
    device = world.devices[call.device or 0]
    segments = tuple(s.replace("{id}", device.id).replace("{node}", device.node_id) for s in call.segments)
    path = Call(**{**call.__dict__, "segments": segments}).path()
    body = call.body
    if body is not None:
        first, second = world.devices
        for placeholder, ref in ((b"{id}", first.id), (b"{node}", first.node_id), (b"{other}", second.id)):
            body = body.replace(placeholder, ref.encode())
    headers = dict(call.headers)
    if call.content_type is not None:
        headers["Content-Type"] = call.content_type
    credential = {
        "apikey-basic": "Basic " + base64.b64encode(f"{world.api_key}:".encode()).decode(),
        "apikey-bearer": f"Bearer {world.api_key}",
        "token": f"Bearer {world.token}",
        "read-token": f"Bearer {world.read_token}",
        "garbage": call.garbage,
    }.get(call.credential)
    if credential:
        headers["Authorization"] = credential
    if path.isascii():
        url = httpx.URL(world.url).copy_with(raw_path=path.encode("ascii"))
    else:
        url = httpx.URL(world.url + path)  # httpx percent-encodes what is not ASCII
    if call.query:
        url = url.copy_merge_params(dict(call.query))
    request = world.http.build_request(call.method, url, content=body, headers=headers)
    if call.method.upper() == "HEAD":
        with httpx.Client(timeout=10, trust_env=False) as once:  # the body a HEAD answer carries stays unread
            return once.send(request)
    return world.http.send(request)


def authenticated(call: Call) -> bool:
    return call.credential in ("apikey-basic", "apikey-bearer", "token", "read-token")


@settings(max_examples=400, deadline=timedelta(seconds=5), suppress_health_check=FIXTURE_CHECKS)
@given(call=calls())
def test_any_request_gets_a_json_answer_and_leaves_only_valid_attributes(world: World, call: Call) -> None:
    with world.db.session() as session:
        session.execute(delete(AttributeRow))
        session.execute(delete(AttributeKeyRow))
    before = store_snapshot(world.db)
    try:
        request_ok = True
        response = send(world, call)
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
        request_ok = False  # httpx itself would not send this (e.g. a method or URL it refuses)
    event("not sendable" if not request_ok else f"status {response.status_code}")
    if not request_ok:
        return
    status = response.status_code
    assert status < 500, f"{call.method} {call.path()} → {status} {response.text[:300]}"
    if call.method.upper() != "HEAD":
        assert response.headers.get("content-type") == "application/json", response.headers
        body = response.json()
        if status >= 400:
            assert status in ERROR_STATUSES, status
            assert isinstance(body, dict) and set(body) == {"message"}, body
            assert isinstance(body["message"], str) and body["message"].strip()
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    if 200 <= status < 300 and call.segments[:3] != ("api", "v2", "oauth"):
        assert authenticated(call), f"{call.method} {call.path()} succeeded without valid credentials"
    writes = call.method.upper() in ("POST", "DELETE", "PATCH")
    if status >= 400 and writes:
        assert store_snapshot(world.db) == before, f"a refused {call.method} changed the store"
    sent_key = call.key if call.key is not None and re.fullmatch(r"[A-Za-z0-9_:]+", call.key) else None
    if status == 200 and call.method.upper() == "POST" and sent_key is not None and call.device is not None:
        stored = world.http.get(
            f"/api/v2/device/{world.devices[call.device].id}/attributes", auth=(world.api_key, "")
        ).json()["attributes"]
        assert sent_key in stored, f"POST of {sent_key!r} answered 200 but nothing was stored"
        sent = json.loads(call.body or b"null")
        assert isinstance(sent, dict) and "value" in sent, f"POST with body {call.body!r} answered 200"
        value = stored[sent_key]
        assert type(value) is type(sent["value"]) and value == sent["value"]
        assert not (isinstance(value, float) and math.isnan(value))
    assert store_problems(world.db, world.clock(), API_NAMESPACES) == []
