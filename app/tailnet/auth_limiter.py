"""Failed authentications of the built-in HTTP API, limited per client address in memory.

Guessing credentials costs an attacker one request per guess; capping failures per address (an IPv6 host by
its /64) bounds the rate of guesses without a database write per failure.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger(__name__)


def client_key(address: str) -> str:
    """The rate-limit key of a client address: an IPv4 address as is, an IPv6 address by its /64 network.

    One host usually holds a whole IPv6 /64, so counting single IPv6 addresses would let it rotate freely.
    Anything that is not an IP address is used as is (cut to 100 characters).
    """
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailedAuthLimiter:
    """At most ``limit`` failed authentications per client in a sliding ``window`` (seconds), in memory.

    A client over the limit is refused (``retry_after``) until its oldest failure in the window has aged out;
    successes are neither counted nor reset the count (or one valid credential would let a client guess
    others without limit). Thread-safe. Memory is bounded: at most ``limit`` timestamps for each of at most
    ``max_clients`` clients; clients whose failures all aged out are dropped, and when full the client that
    failed least recently is forgotten.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_clients: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or max_clients < 1:
            raise ValueError("limit, window and max_clients must be positive")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.now = now
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many clients are tracked now."""
        with self._lock:
            return len(self._failures)

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again if it is over the limit, else ``None``."""
        with self._lock:
            now = self.now()
            self._drop_stale(now)
            failures = self._failures.get(client)
            if failures is None:
                return None
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return None
            return max(failures[0] + self.window - now, 0.001)

    def record_failure(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        with self._lock:
            now = self.now()
            failures = self._failures.get(client)
            if failures is None:
                failures = self._failures[client] = deque(maxlen=self.limit)
            else:
                self._failures.move_to_end(client)
            failures.append(now)
            if len(failures) == self.limit and failures[0] > now - self.window:
                log.warning(
                    "%d failed authentications from %s within %gs; refusing its requests for a while",
                    self.limit,
                    client,
                    self.window,
                )
            self._drop_stale(now)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def _drop_stale(self, now: float) -> None:
        """Forget clients whose latest failure left the window (the least recent come first)."""
        while self._failures:
            client, failures = next(iter(self._failures.items()))
            if failures and failures[-1] > now - self.window:
                return
            del self._failures[client]
