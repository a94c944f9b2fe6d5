"""One contract, two adapters: the built-in store, and the Tailscale adapter against the built-in HTTP API.

A broken rule is ``InvalidRequest`` through both (a local ``RuleViolation``, or the API's 400). The second
adapter proves that a client written for api.tailscale.com works against accessbot's API by changing only its
base URL (API key and OAuth client both), and that both adapters behave the same behind ``Tailnet``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from app.core.clock import FrozenClock
from app.db import Database
from app.tailnet.api import make_api
from app.tailnet.auth import AuthStore
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import DeviceNotFound, InvalidRequest, NotFound
from app.tailnet.models import Actor, AttributeWrite, Device
from app.tailnet.protocol import Tailnet
from app.tailnet.service import resolve_device
from app.tailnet.tailscale import TailscaleTailnet
from app.web.server import make_server

ADMIN = Actor("cli:setup")
WRITER = Actor("UWRITER")


@pytest.fixture
def devices(builtin: BuiltinTailnet) -> list[Device]:
    return [
        builtin.add_device(
            name="alpha.tail1.ts.net",
            user="a@example.com",
            os="linux",
            serial_numbers=["SA"],
            tags=["tag:prod"],
            actor=ADMIN,
        ),
        builtin.add_device(name="bravo.tail1.ts.net", user="b@example.com", os="macos", actor=ADMIN),
    ]


@pytest.fixture
def api_url(builtin: BuiltinTailnet, db: Database, clock: FrozenClock) -> Iterator[str]:
    server = make_server(make_api(builtin, db, clock=clock), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["builtin", "tailscale-apikey", "tailscale-oauth"])
def tailnet(
    request: pytest.FixtureRequest, builtin: BuiltinTailnet, db: Database, clock: FrozenClock, devices: list[Device]
) -> Iterator[Tailnet]:
    if request.param == "builtin":
        yield builtin
        return
    url = request.getfixturevalue("api_url")
    store = AuthStore(db, clock=clock)
    if request.param == "tailscale-apikey":
        _, key = store.create_api_key(actor=ADMIN, description="contract")
        adapter = TailscaleTailnet(db, api_url=url, api_key=key, clock=clock, sleep=lambda _s: None)
    else:
        client, secret = store.create_oauth_client(actor=ADMIN, description="contract")
        adapter = TailscaleTailnet(
            db, api_url=url, oauth_client_id=client.id, oauth_client_secret=secret, clock=clock, sleep=lambda _s: None
        )
    with adapter:
        yield adapter


def test_devices(tailnet: Tailnet, devices: list[Device]) -> None:
    listed = {d.id: d for d in tailnet.list_devices()}
    assert set(listed) == {d.id for d in devices}
    alpha = listed[devices[0].id]
    assert (alpha.node_id, alpha.name, alpha.user, alpha.os) == (
        devices[0].node_id,
        "alpha.tail1.ts.net",
        "a@example.com",
        "linux",
    )
    assert alpha.serial_numbers == ("SA",) and alpha.tags == ("tag:prod",)
    assert tailnet.get_device(devices[1].node_id).id == devices[1].id
    assert resolve_device(tailnet, "bravo").id == devices[1].id
    with pytest.raises(DeviceNotFound):
        tailnet.get_device("9999")


def test_set_get_expire_delete(tailnet: Tailnet, devices: list[Device], clock: FrozenClock) -> None:
    alpha = devices[0].id
    expiry = clock() + timedelta(minutes=30)
    tailnet.set_attribute(alpha, "custom:prodAccess", True, actor=WRITER, expiry=expiry, comment="contract test")
    tailnet.set_attribute(alpha, "custom:tier", 3, actor=WRITER)
    got = tailnet.get_attributes(alpha)
    assert got.attributes == {"node:os": "linux", "custom:prodAccess": True, "custom:tier": 3}
    assert got.expiries == {"custom:prodAccess": expiry}
    tailnet.delete_attribute(alpha, "custom:tier", actor=WRITER)
    if isinstance(tailnet, BuiltinTailnet):  # the store's own API says so (the CLI tells the admin)
        with pytest.raises(NotFound):
            tailnet.delete_attribute(alpha, "custom:tier", actor=WRITER)
    else:  # Tailscale's API answers 200 to deleting an unset attribute (only 404 is "device not found")
        tailnet.delete_attribute(alpha, "custom:tier", actor=WRITER)
    assert "custom:tier" not in tailnet.get_attributes(alpha).attributes
    clock.advance(minutes=31)
    assert tailnet.get_attributes(alpha).attributes == {"node:os": "linux"}


def test_rules_hold_through_either_adapter(tailnet: Tailnet, devices: list[Device], clock: FrozenClock) -> None:
    alpha, bravo = devices[0].id, devices[1].id
    tailnet.set_attribute(alpha, "custom:Level", 1, actor=WRITER)
    for key, value, expiry in [
        ("huntress:firewallStatus", "Enabled", None),
        ("custom:" + "x" * 44, True, None),
        ("custom:v", 2**53, None),
        ("custom:v", "two words", None),
        ("custom:v", True, clock() - timedelta(seconds=5)),
        ("custom:level", 2, None),  # case-insensitive collision with custom:Level (enforced by the store)
        ("custom:Level", "high", None),  # type fixed across the tailnet
    ]:
        with pytest.raises(InvalidRequest):
            tailnet.set_attribute(bravo, key, value, actor=WRITER, expiry=expiry)
    assert tailnet.get_attributes(bravo).attributes == {"node:os": "macos"}


def test_batch(tailnet: Tailnet, devices: list[Device]) -> None:
    alpha, bravo = devices[0].id, devices[1].id
    tailnet.set_attribute(alpha, "custom:old", True, actor=WRITER)
    tailnet.set_many(
        {alpha: {"custom:old": None, "custom:b": AttributeWrite(1)}, bravo: {"custom:b": AttributeWrite(2)}},
        actor=WRITER,
        comment="batch",
    )
    assert tailnet.get_attributes(alpha).attributes == {"node:os": "linux", "custom:b": 1}
    assert tailnet.get_attributes(bravo).attributes == {"node:os": "macos", "custom:b": 2}
    with pytest.raises(InvalidRequest):
        tailnet.set_many(
            {alpha: {"custom:b": AttributeWrite("x")}, bravo: {"custom:c": AttributeWrite(1)}}, actor=WRITER
        )
    # atomic: nothing of the bad batch
    assert tailnet.get_attributes(bravo).attributes == {"node:os": "macos", "custom:b": 2}
