"""Which address a request came from when the built-in API runs behind reverse proxies.

Only peers listed in ``TRUSTED_PROXIES`` may say, in ``X-Forwarded-For``, whom they forward for; anyone else's
header is ignored, so a client cannot pick its own rate-limit key. The header is read from the right (the
entry the nearest proxy appended) and the first address that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from wsgiref.types import WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1, ::1"`` → networks; ``ValueError`` naming an entry that is not an IP or CIDR."""
    networks: list[Network] = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    """Resolve a WSGI request's client address, trusting ``X-Forwarded-For`` only from ``networks``."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    def trusted(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        ip = _ip(address)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)

    def client(self, environ: WSGIEnvironment) -> str:
        """The client's address: the peer itself, or the nearest untrusted hop it (and proxies before it)
        reported. A malformed entry ends the walk at the last hop known to be a proxy."""
        peer = str(environ.get("REMOTE_ADDR") or "unknown")
        if not self.networks or not self.trusted(peer):
            return peer
        hops = [hop.strip() for hop in str(environ.get("HTTP_X_FORWARDED_FOR") or "").split(",")]
        client = peer
        for hop in reversed([hop for hop in hops if hop]):
            if _ip(hop) is None:
                break
            client = hop
            if not self.trusted(hop):
                break
        return client
