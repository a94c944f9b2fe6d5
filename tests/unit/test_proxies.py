"""Client addresses behind reverse proxies: ``X-Forwarded-For`` believed only from trusted proxies."""

from __future__ import annotations

import re

import pytest

from app.core.proxies import TrustedProxies, parse_proxies

PROXIES = TrustedProxies(parse_proxies("10.0.0.0/8, 127.0.0.1, fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.7", None, "203.0.113.7"),  # no proxy
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # an untrusted peer cannot name someone else
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),  # one trusted proxy
        ("10.1.2.3", "198.51.100.1, 10.9.9.9", "198.51.100.1"),  # two trusted proxies in a row
        ("10.1.2.3", "1.1.1.1, 198.51.100.1", "198.51.100.1"),  # the client's own spoofed entry is not used
        ("10.1.2.3", None, "10.1.2.3"),  # a trusted proxy that forwards for nobody is the client
        ("10.1.2.3", "", "10.1.2.3"),
        ("10.1.2.3", "10.5.5.5, 10.6.6.6", "10.5.5.5"),  # only proxies: the farthest is the client
        ("10.1.2.3", "198.51.100.1, garbage", "10.1.2.3"),  # malformed: stop at the last known proxy
        ("10.1.2.3", "garbage, 198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("fd00::5", "198.51.100.9", "198.51.100.9"),
        ("::ffff:10.1.2.3", "198.51.100.1", "198.51.100.1"),  # IPv4-mapped peer
    ],
)
def test_client_address(peer: str, forwarded: str | None, client: str) -> None:
    environ = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    assert PROXIES.client(environ) == client


def test_nobody_trusted_by_default() -> None:
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}
    assert TrustedProxies().client(environ) == "127.0.0.1"
    assert TrustedProxies(parse_proxies("")).client(environ) == "127.0.0.1"


def test_a_bad_entry_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33' is not an IP address or network")):
        parse_proxies("127.0.0.1, 10.0.0.0/33")
